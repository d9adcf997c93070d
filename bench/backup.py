"""Benchmark of backups (app/backup/engine.py) and restores (app/restore/planner.py, executor.py)
against the Graph simulator, with latency and Intune's read and write throttling on.

    .venv/bin/python bench/backup.py [--quick] [--policies-per-family 100] [--time-scale 4]
                                     [--latency-ms 20] [--profile DIR] [--no-large] [--no-restore]
                                     [--no-sync-baseline] [--client-rate R]

Set-up as bench/sync.py's (its helpers are reused): a throwaway PostgreSQL (bench/cluster.py),
migrated; the Graph simulator as a process of its own (`python -m simulator serve`) with
`--latency-ms` on every HTTP request and Intune's per-tenant limits, 1,000 requests per 20 s
(each request inside a $batch counts) of which at most 100 writes (POST, PATCH, PUT), answered
429 + Retry-After beyond them (simulator/common.py ThrottleLimits). Time is scaled by
--time-scale K: the simulator's window is 20/K s (so 1,000 requests and 100 writes per 20/K s)
and the client's per-tenant token buckets (app/graph/client.py: burst 100, 40/s; writes burst 5,
4.5/s) refill K times faster; request counts, bursts and the latency are not scaled, nor is the simulator's
Retry-After (whole seconds, at least 1). Each tenant has P policies per family (5 policy
families: 5P policies) plus the demo's groups, roles, filters and scope tags. Every step runs
as the app role inside its workspace (row-level security), in a fresh process:

  A.  backup of a tenant with 5P policies (run_backup): HTTP round trips per item and per
      policy (the set's `requests`), wall time against the throttling floors, CPU time, peak RSS;
  A2. a second backup of the same, unchanged tenant: the same figures, and the bytes it stored
      against the first's;
  B.  backup of a tenant with 4 x 5P policies: peak RSS (flat?), and the same figures;
  B2. a second backup of B, unchanged: bytes again, at the larger size;
  S.  a first sync of tenant A (bench/sync.py's child): the same machine's baseline, same run;
  R.  every policy of tenant A changed on the simulator (its description), then the 5P policies
      restored from backup A into the same tenant (start_restore_from_backup, assignments
      "keep"): planning (plan_restore: reads only) and executing (execute_restore: by chunks of
      10 items, a batched read, the writes, a batched read-back) timed apart; the execution
      against the write-throttling floor.

Floors: requests counted by the simulator's throttle (admitted requests, inner $batch requests
included, the outer $batch POST not) divided by the allowed rate: 1,000 per 20/K s for all
requests, 100 per 20/K s for writes (POST/PATCH/PUT other than $batch). A step's floor is the
larger of its request floor and its write floor (writes count against both limits). The
client-bucket floor (requests ÷ 40K/s, or writes ÷ 4.5K/s, the client's write bucket, whichever
is larger) is shown for information. All are steady-state floors (a window starts empty and the bucket full).
"Paced" is the time the step slept in the client's bucket (a counting subclass of TokenBucket):
wall minus paced is time spent in round trips, Python and the database.

Bytes: two measures around each backup, taken by the parent as the database owner:
  - disk: growth of pg_total_relation_size (heap, TOAST, free space map, every index) of
    backup_sets, backup_items and backup_payloads;
  - rows: sum of pg_column_size(row) of the rows the backup added (its backup_sets row, and
    the backup_items and backup_payloads rows with ids above the previous maximum).
The goal is judged on disk: that is what the operator pays, and for a second backup most of
it is outside the rows (the backup_sets row's GIN index on item_ids, dead row versions); the
rows measure is the check that no item or payload row was added. Each table's growth is also
broken down (heap with its maps, TOAST, each index) in the detailed lines.

Peak RSS: the child resets its high-water mark (/proc/self/clear_refs) just before the step,
as bench/sync.py does. `--profile DIR` runs A, plan and execute under cProfile and prints
their top functions (their wall and CPU figures then include the profiler's overhead).
Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from bench.sync import Control, current_rss_kib, reset_peak_rss, start_simulator, stop  # noqa: E402

INTUNE_REQUESTS, INTUNE_WRITES, INTUNE_WINDOW = 1000, 100, 20.0  # ThrottleLimits' defaults
BACKUP_TABLES = ("backup_sets", "backup_items", "backup_payloads")
POLICY_FAMILIES = ("settingsCatalog", "deviceConfigurations", "compliancePolicies", "iosAppProtection",
                   "androidAppProtection")
GOALS = {"floor": 1.3, "bytes": 0.02, "rss": 1.1}


class BenchControl(Control):
    def requests(self, tenant_id: str) -> dict:
        """What the throttle counted for the tenant since the last reset (all, writes), and its 429s."""
        records = [r for r in self.call("GET", "/requests")["value"]
                   if r["server"] == "api" and r["tenant_id"] == tenant_id]
        outer_batches = [r for r in records if not r["in_batch"] and r["path"].endswith("/$batch")]
        counted = [r for r in records if r not in outer_batches and r["status"] != 429]
        writes = [r for r in counted if r["method"] not in ("GET", "HEAD")]
        throttled = [r for r in records if r["status"] == 429]
        return {"counted": len(counted), "counted_writes": len(writes), "refused_429": len(throttled),
                "refused_429_writes": sum(r["method"] not in ("GET", "HEAD") for r in throttled),
                "outer": sum(not r["in_batch"] for r in records)}

    def objects(self, tenant_id: str, family: str) -> list[dict]:
        return self.call("GET", f"/tenants/{tenant_id}/objects/{family}")["value"]

    def change(self, tenant_id: str, family: str, object_id: str, changes: dict) -> None:
        self.call("PATCH", f"/tenants/{tenant_id}/objects/{family}/{object_id}", changes)

    def writes(self, tenant_id: str) -> list[dict]:
        return self.call("GET", f"/tenants/{tenant_id}/writes")["value"]


# --- one step in this process (the child) -------------------------------------------------------


def child(spec: dict) -> None:
    import resource

    from app import create_app
    from app.extensions import db
    from app.graph.client import (DEFAULT_BURST, DEFAULT_RATE_PER_SECOND, DEFAULT_WRITE_BURST,
                                  DEFAULT_WRITE_RATE_PER_SECOND, GraphClient, TokenBucket)
    from app.row_security import working_in_workspace
    from app.sync.runner import graph_settings, token_provider

    control = BenchControl(os.environ["GRAPH_API_URL"], os.environ["GRAPH_CA_BUNDLE"])
    app = create_app(database_role="app")
    clients: list = []

    class CountingBucket(TokenBucket):
        """The client's buckets (requests, writes), counting the seconds their callers slept waiting
        for them (paced time)."""

        waited = 0.0

        def acquire(self, cost=1.0, sleep=time.sleep):
            wait = super().acquire(cost, sleep)
            CountingBucket.waited += wait
            return wait

    buckets: dict = {}

    def client_factory(tenant_id, provider):
        # What app.backup.runner / app.restore.runner make, but with buckets of the client's default
        # sizes refilled --time-scale times faster: fresh for each measured step (a new tenant's
        # buckets start full), shared by the step's clients as the per-tenant buckets are.
        if tenant_id not in buckets:
            buckets[tenant_id] = (
                CountingBucket(DEFAULT_BURST, (spec.get("client_rate") or DEFAULT_RATE_PER_SECOND) * spec["time_scale"]),
                CountingBucket(DEFAULT_WRITE_BURST, DEFAULT_WRITE_RATE_PER_SECOND * spec["time_scale"]))
        bucket, writes = buckets[tenant_id]
        client = GraphClient(graph_settings(app), tenant_id, token_provider=provider, rate_limit=bucket,
                             write_limit=writes)
        clients.append(client)
        return client

    def measured(step, external_id: str, profile: str | None):
        """Run step() with RSS, wall, CPU and the simulator's request log around it."""
        control.reset_log()
        process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_reset = reset_peak_rss()
        rss_before = current_rss_kib()
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        CountingBucket.waited = 0.0
        buckets.clear()
        started, cpu_started = time.perf_counter(), time.process_time()
        value = step()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return value, {"wall": wall, "cpu": cpu, "rss_before_kib": rss_before, "rss_peak_kib": rss_peak,
                       "peak_reset": peak_reset, "process_peak_kib": max(process_peak, rss_peak),
                       "paced": CountingBucket.waited,
                       **control.requests(external_id)}

    with app.app_context(), working_in_workspace(spec["workspace_id"]):
        from app.models import Tenant

        tenant = db.session.get(Tenant, spec["tenant_id"])
        external_id = str(tenant.external_id)
        if spec["kind"] == "backup":
            result = child_backup(spec, app, tenant, external_id, client_factory, clients, measured)
        else:
            result = child_restore(spec, app, tenant, external_id, client_factory, clients, measured, control)
    print("RESULT " + json.dumps(result), flush=True)


def child_backup(spec, app, tenant, external_id, client_factory, clients, measured) -> dict:
    from sqlalchemy import select

    from app.backup.engine import BackupContext, create_backup, run_backup
    from app.extensions import db
    from app.graph.families import FAMILIES_BY_KEY, STORE_POLICY
    from app.models import BackupItem, BackupSet
    from app.sync.runner import token_provider

    backup_set = create_backup(tenant, "command", name=spec["name"])
    db.session.commit()
    set_id = backup_set.id
    context = BackupContext(token_provider=token_provider(app), client_factory=client_factory)
    backup_set, stats = measured(lambda: run_backup(set_id, context), external_id, spec.get("profile"))
    backup_set = db.session.get(BackupSet, set_id)
    families = dict(db.session.execute(
        select(BackupItem.family, db.func.count()).where(BackupItem.id.in_(backup_set.item_ids))
        .group_by(BackupItem.family)).all())
    policies = sum(count for key, count in families.items() if FAMILIES_BY_KEY[key].store == STORE_POLICY)
    return {"set_id": set_id, "status": backup_set.status, "error": backup_set.error,
            "requests": backup_set.requests, "throttled": backup_set.throttled, "items": backup_set.item_count,
            "policies": policies, "families": families, "size_bytes": backup_set.size_bytes,
            "client": clients[0].stats.as_dict() if clients else {}, **stats}


def child_restore(spec, app, tenant, external_id, client_factory, clients, measured, control) -> dict:
    from sqlalchemy import select

    from app.extensions import db
    from app.graph.families import FAMILIES_BY_KEY, STORE_POLICY
    from app.models import BackupItem, BackupSet, RestoreItem, RestoreRun, User
    from app.restore.executor import execute_restore
    from app.restore.planner import RestoreContext, plan_restore
    from app.restore.service import execute, start_restore_from_backup
    from app.sync.runner import token_provider

    backup_set = db.session.get(BackupSet, spec["set_id"])
    user = db.session.get(User, spec["user_id"])
    item_ids = [item_id for item_id, family in db.session.execute(
        select(BackupItem.id, BackupItem.family).where(BackupItem.id.in_(backup_set.item_ids)))
        if FAMILIES_BY_KEY[family].store == STORE_POLICY]
    run = start_restore_from_backup(backup_set, item_ids, tenant, mode="keep", user=user)
    db.session.commit()
    run_id = run.id
    context = RestoreContext(token_provider=token_provider(app), client_factory=client_factory)
    profile = spec.get("profile")

    _, plan_stats = measured(lambda: plan_restore(run_id, context), external_id,
                             f"{profile}/plan.prof" if profile else None)
    run = db.session.get(RestoreRun, run_id)
    if run.status != "planned":
        return {"status": run.status, "error": run.error}
    plan_client = summed_stats(clients)
    actions = dict(run.summary.get("actions") or {})
    execute(run, user)
    db.session.commit()
    first_client = len(clients)  # the execution uses two: one writes, one reads (app.restore.executor.Reads)
    _, execute_stats = measured(lambda: execute_restore(run_id, context), external_id,
                                f"{profile}/execute.prof" if profile else None)
    db.session.expire_all()
    run = db.session.get(RestoreRun, run_id)
    items = db.session.scalars(select(RestoreItem).where(RestoreItem.restore_run_id == run_id)).all()
    results: dict[str, int] = {}
    for item in items:
        results[item.status] = results.get(item.status, 0) + 1
    writes = control.writes(external_id)
    return {"status": run.status, "error": run.error, "items": len(items), "actions": actions,
            "results": results, "verified": sum(1 for item in items if item.verified),
            "written_objects": len({(w["family"], w["object_id"]) for w in writes}),
            "writes_logged": len(writes), "plan": {**plan_stats, "client": plan_client},
            "execute": {**execute_stats, "client": summed_stats(clients[first_client:])}}


def summed_stats(clients) -> dict:
    total: dict = {}
    for client in clients:
        for key, value in client.stats.as_dict().items():
            total[key] = total.get(key, 0) + value
    return total


# --- the parent ----------------------------------------------------------------------------------


def child_step(env: dict, spec: dict) -> dict:
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    found = re.search(r"^RESULT (.*)$", result.stdout, re.M)
    if result.returncode != 0 or not found:
        raise SystemExit(f"the {spec['kind']} child failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    outcome = json.loads(found.group(1))
    if outcome["status"] not in ("completed", "succeeded"):
        raise SystemExit(f"the {spec['kind']} did not succeed: {outcome['status']}: {outcome.get('error')}")
    return outcome


PARTS = """
    SELECT c.relname, 'heap', pg_table_size(c.oid) - coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)
      FROM pg_class c WHERE c.relname = ANY(%(tables)s) AND c.relkind = 'r'
    UNION ALL
    SELECT c.relname, 'toast', coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)
      FROM pg_class c WHERE c.relname = ANY(%(tables)s) AND c.relkind = 'r'
    UNION ALL
    SELECT c.relname, i.relname, pg_relation_size(i.oid)
      FROM pg_class c JOIN pg_index x ON x.indrelid = c.oid JOIN pg_class i ON i.oid = x.indexrelid
     WHERE c.relname = ANY(%(tables)s) AND c.relkind = 'r'
"""


def storage(cluster, database: str) -> dict:
    """Disk of the backup tables (pg_total_relation_size, and its parts: heap with its free space and
    visibility maps, TOAST with its index, each index) and their highest ids."""
    with cluster.conn(database) as conn:
        sizes = dict(conn.execute("SELECT relname, pg_total_relation_size(oid) FROM pg_class "
                                  "WHERE relname = ANY(%s) AND relkind = 'r'", (list(BACKUP_TABLES),)).fetchall())
        parts = {f"{table}:{part}": size for table, part, size in
                 conn.execute(PARTS, {"tables": list(BACKUP_TABLES)}).fetchall()}
        max_ids = {table: conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
                   for table in BACKUP_TABLES}
    return {"sizes": sizes, "parts": parts, "max_ids": max_ids}


def stored_by(cluster, database: str, before: dict, after: dict, set_id: int) -> dict:
    """Bytes a backup stored: disk growth per table, and pg_column_size of the rows it added."""
    disk = {table: after["sizes"][table] - before["sizes"][table] for table in BACKUP_TABLES}
    parts = {part: after["parts"][part] - before["parts"].get(part, 0) for part in after["parts"]
             if after["parts"][part] != before["parts"].get(part, 0)}
    with cluster.conn(database) as conn:
        rows = {"backup_sets": conn.execute("SELECT count(*), coalesce(sum(pg_column_size(s.*)), 0) "
                                            "FROM backup_sets s WHERE id = %s", (set_id,)).fetchone()}
        for table in ("backup_items", "backup_payloads"):
            rows[table] = conn.execute(f"SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0) FROM {table} t "
                                       "WHERE id > %s", (before["max_ids"][table],)).fetchone()
        item_ids = conn.execute("SELECT pg_column_size(item_ids), cardinality(item_ids) FROM backup_sets "
                                "WHERE id = %s", (set_id,)).fetchone()
    return {"disk": disk, "disk_total": sum(disk.values()), "disk_parts": parts,
            "rows": {table: {"count": count, "bytes": int(size)} for table, (count, size) in rows.items()},
            "rows_total": sum(int(size) for _count, size in rows.values()),
            "item_ids_bytes": item_ids[0], "item_ids": item_ids[1]}


def measured_backup(cluster, database, env, spec) -> dict:
    before = storage(cluster, database)
    outcome = child_step(env, {**spec, "kind": "backup"})
    after = storage(cluster, database)
    outcome["stored"] = stored_by(cluster, database, before, after, outcome["set_id"])
    return outcome


def sync_baseline(env: dict, spec: dict) -> dict:
    """bench/sync.py's child: a first sync of the tenant in a fresh process (its reads are the backup's,
    plus groups by delta and role definitions), timed the same way: the same machine's baseline."""
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "bench" / "sync.py"), "--child", json.dumps(spec)],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    found = re.search(r"^RESULT (.*)$", result.stdout, re.M)
    if result.returncode != 0 or not found:
        raise SystemExit(f"the sync child failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    outcome = json.loads(found.group(1))
    if outcome["status"] != "succeeded":
        raise SystemExit(f"the sync did not succeed: {outcome['status']}: {outcome['error']}")
    return outcome


def change_every_policy(control: BenchControl, external_id: str) -> int:
    """A new description on every policy of the tenant (an update for the restore to undo)."""
    targets = [(family, obj["id"]) for family in POLICY_FAMILIES for obj in control.objects(external_id, family)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda target: control.change(external_id, target[0], target[1],
                                                    {"description": "changed after the backup (bench)"}), targets))
    return len(targets)


def mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run (P = 25 per family)")
    parser.add_argument("--policies-per-family", type=int, default=None, help="P per family (default 100; --quick 25)")
    parser.add_argument("--time-scale", type=float, default=4.0,
                        help="K: the throttle window is 20/K s and the client bucket refills K times faster")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--no-large", action="store_true", help="skip B and B2 (the 4x tenant)")
    parser.add_argument("--client-rate", type=float, default=None,
                        help="an experiment: the client bucket's rate in requests/s at real speed (default the "
                             "client's own, app/graph/client.py DEFAULT_RATE_PER_SECOND); the sync baseline keeps it")
    parser.add_argument("--no-sync-baseline", action="store_true", help="skip S (a sync of tenant A)")
    parser.add_argument("--no-restore", action="store_true", help="skip R (the restore)")
    parser.add_argument("--profile", default=None, metavar="DIR",
                        help="profile backup A, the plan and the execution with cProfile into DIR")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))

    from sqlalchemy.engine import make_url

    from app.database import APP_ROLE
    from app.graph.client import DEFAULT_BURST, DEFAULT_RATE_PER_SECOND, DEFAULT_WRITE_RATE_PER_SECOND
    from app.graph.families import required_permissions
    from bench.cluster import bench_cluster

    per_family = args.policies_per_family or (25 if args.quick else 100)
    scale = args.time_scale
    bench_started = time.monotonic()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tenantatlas-backup-bench-sim-") as state_dir, \
            bench_cluster("tenantatlas-backup-bench-") as cluster:
        database = "backup_bench"
        cluster.create(database)
        owner_url = cluster.url_for(database)
        app_url = make_url(owner_url).set(username=APP_ROLE, password=None).render_as_string(hide_password=False)
        base_env = {**os.environ, "TENANTATLAS_ENV": "test", "SECRET_KEY": "bench"}
        subprocess.run([sys.executable, "-m", "flask", "db", "upgrade"], cwd=PROJECT_ROOT, check=True,
                       env={**base_env, "DATABASE_URL": owner_url}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        simulator, graph_env = start_simulator(Path(state_dir), args.latency_ms, scale, args.page_size)
        try:
            control = BenchControl(graph_env["GRAPH_API_URL"], graph_env["GRAPH_CA_BUNDLE"])
            env = {**base_env, **graph_env, "DATABASE_URL": app_url}
            sizes = [per_family] + ([] if args.no_large else [4 * per_family])
            externals = [str(uuid.uuid4()) for _ in sizes]
            for external, size in zip(externals, sizes):
                control.add_tenant(external, size)  # every read and write permission granted
            granted = json.dumps(sorted(set(required_permissions("read")) | set(required_permissions("write"))))
            with cluster.conn(database) as conn:
                workspace_id = conn.execute("INSERT INTO workspaces (slug, name) VALUES ('backup-bench', "
                                            "'Backup bench') RETURNING id").fetchone()[0]
                user_id = conn.execute("INSERT INTO users (email, name, password_hash) VALUES "
                                       "('manager@bench.invalid', 'Bench Manager', 'x') RETURNING id").fetchone()[0]
                tenant_ids = [conn.execute(
                    "INSERT INTO tenants (workspace_id, external_id, name, connection_status, granted_permissions, "
                    "permissions_checked_at) VALUES (%s, %s, %s, 'connected', %s, now()) RETURNING id",
                    (workspace_id, external, f"Bench {external[:8]}", granted)).fetchone()[0] for external in externals]
            spec = {"workspace_id": workspace_id, "time_scale": scale, "client_rate": args.client_rate}
            print(f"P = {per_family} policies per family (5 families), time scale K = {scale:g}, "
                  f"latency {args.latency_ms:g} ms, page size {args.page_size}", flush=True)
            profile = Path(args.profile).resolve() if args.profile else None
            if profile:
                profile.mkdir(parents=True, exist_ok=True)

            first = measured_backup(cluster, database, env, {**spec, "tenant_id": tenant_ids[0], "name": "A",
                                                             "profile": str(profile / "backup.prof") if profile else None})
            print(f"A.  backup, {first['policies']} policies, {first['items']} items: {first['wall']:.2f} s", flush=True)
            second = measured_backup(cluster, database, env, {**spec, "tenant_id": tenant_ids[0], "name": "A2"})
            print(f"A2. backup of the unchanged tenant: {second['wall']:.2f} s", flush=True)
            large = large_second = None
            if not args.no_large:
                large = measured_backup(cluster, database, env, {**spec, "tenant_id": tenant_ids[1], "name": "B"})
                print(f"B.  backup, {large['policies']} policies, {large['items']} items: {large['wall']:.2f} s",
                      flush=True)
                large_second = measured_backup(cluster, database, env, {**spec, "tenant_id": tenant_ids[1],
                                                                        "name": "B2"})
                print(f"B2. backup of the unchanged tenant: {large_second['wall']:.2f} s", flush=True)

            sync = None
            if not args.no_sync_baseline:
                sync = sync_baseline(env, {"workspace_id": workspace_id, "time_scale": scale,
                                           "tenant_id": tenant_ids[0]})
                print(f"S.  sync of tenant A (baseline), {sync['policies']} policies: {sync['wall']:.2f} s", flush=True)

            restore = None
            if not args.no_restore:
                changed = change_every_policy(control, externals[0])
                restore = child_step(env, {**spec, "kind": "restore", "tenant_id": tenant_ids[0],
                                           "set_id": first["set_id"], "user_id": user_id,
                                           "profile": str(profile) if profile else None})
                print(f"R.  {changed} policies changed on the simulator, restored: plan "
                      f"{restore['plan']['wall']:.2f} s, execute {restore['execute']['wall']:.2f} s", flush=True)
        finally:
            stop(simulator)

    load_after = os.getloadavg()
    window = INTUNE_WINDOW / scale
    all_rate, write_rate = INTUNE_REQUESTS / window, INTUNE_WRITES / window
    client_rate = (args.client_rate or DEFAULT_RATE_PER_SECOND) * scale
    client_write_rate = DEFAULT_WRITE_RATE_PER_SECOND * scale

    def floors(r: dict) -> dict:
        request_floor, write_floor = r["counted"] / all_rate, r["counted_writes"] / write_rate
        return {"requests": request_floor, "writes": write_floor, "floor": max(request_floor, write_floor),
                "client": max(r["counted"] / client_rate, r.get("counted_writes", 0) / client_write_rate)}

    def describe(name: str, r: dict) -> None:
        f = floors(r)
        print(f"{name}: {r['policies']} policies, {r['items']} items {r['families']}; {r['requests']} round trips "
              f"({r['client'].get('inner_requests', 0)} inner $batch requests), {r['counted']} requests counted by "
              f"the throttle, {r['refused_429']} refused with 429; wall {r['wall']:.2f} s (of which "
              f"{r['paced']:.2f} s waiting for the client's bucket), CPU {r['cpu']:.2f} s; "
              f"floors: simulator {f['requests']:.2f} s, client bucket {f['client']:.2f} s; "
              f"RSS {r['rss_before_kib'] / 1024:.0f} MiB before, peak during it {r['rss_peak_kib'] / 1024:.0f} MiB"
              f"{'' if r['peak_reset'] else ' (PEAK NOT RESET: start-up included)'}; stored: disk "
              f"{r['stored']['disk']} = {r['stored']['disk_total']:,} B (grown: {r['stored']['disk_parts']}), rows "
              f"{ {t: (v['count'], v['bytes']) for t, v in r['stored']['rows'].items()} } = "
              f"{r['stored']['rows_total']:,} B (item_ids array {r['stored']['item_ids']} ids, "
              f"{r['stored']['item_ids_bytes']:,} B); engine's size_bytes {r['size_bytes']:,}")

    print(f"\nTotal {time.monotonic() - bench_started:.0f} s; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after. Simulator limit 1,000 requests and 100 writes per {window:g} s "
          f"({all_rate:g}/s, {write_rate:g} writes/s); client bucket burst {DEFAULT_BURST:g}, {client_rate:g}/s, "
          f"writes {client_write_rate:g}/s.")
    backups = [("A (backup, P)", first), ("A2 (unchanged, P)", second)]
    if large:
        backups += [("B (backup, 4P)", large), ("B2 (unchanged, 4P)", large_second)]
    for name, r in backups:
        describe(name, r)
    if sync:
        print(f"S (sync of A, baseline): {sync['policies']} policies, {sync['requests']} round trips, "
              f"{sync['counted']} requests counted, {sync['refused_429']} refused with 429; wall {sync['wall']:.2f} s, "
              f"CPU {sync['cpu']:.2f} s; floors: simulator {sync['counted'] / all_rate:.2f} s, client bucket "
              f"{sync['counted'] / (DEFAULT_RATE_PER_SECOND * scale):.2f} s")
    for name in ("plan", "execute") if restore else ():
        r = restore[name]
        f = floors(r)
        print(f"R {name}: {r['client']['requests']} round trips ({r['client']['inner_requests']} inner), "
              f"{r['counted']} requests counted ({r['counted_writes']} writes), {r['refused_429']} refused with 429 "
              f"({r['refused_429_writes']} writes); wall {r['wall']:.2f} s (of which {r['paced']:.2f} s waiting for "
              f"the client's bucket), CPU {r['cpu']:.2f} s; floors: requests "
              f"{f['requests']:.2f} s, writes {f['writes']:.2f} s, client buckets {f['client']:.2f} s; "
              f"RSS peak {r['rss_peak_kib'] / 1024:.0f} MiB")
    for name in ("plan", "execute") if restore else ():
        r = restore[name]
        print(f"R {name}: {r['wall'] / r['client']['requests'] * 1000:.0f} ms of wall per round trip "
              f"(the simulator's latency is {args.latency_ms:g} ms; the execution reads in a second thread)")
    if restore:
        print(f"R: {restore['items']} items, plan {restore['actions']}, results {restore['results']}, verified "
              f"{restore['verified']}; simulator write log: {restore['writes_logged']} writes to "
              f"{restore['written_objects']} objects")

    rows = []
    for name, r in backups:
        rows.append((f"round trips per item / per policy ({name})",
                     f"{r['requests'] / r['items']:.3f} / {r['requests'] / r['policies']:.3f}", "(reported)", ""))
    for name, r in backups:
        f = floors(r)
        ratio = r["wall"] / f["floor"]
        rows.append((f"wall / throttling floor ({name})", f"{r['wall']:.2f} / {f['floor']:.2f} s = {ratio:.2f}",
                     "<= 1.3", mark(ratio <= GOALS["floor"])))
        rows.append(("  wall / client-bucket floor; time not paced by the bucket",
                     f"{r['wall'] / f['client']:.2f}; {r['wall'] - r['paced']:.2f} s", "", ""))
    if sync:
        ratio = sync["wall"] / (sync["counted"] / all_rate)
        rows.append(("  baseline: sync of A, wall / throttling floor", f"{sync['wall']:.2f} / "
                     f"{sync['counted'] / all_rate:.2f} s = {ratio:.2f}", "(same run)", ""))
    for name, r in backups:
        rows.append((f"CPU ms per 1,000 items ({name})", f"{r['cpu'] * 1e6 / r['items']:,.0f}", "(reported)", ""))
    pairs = [("P", first, second)] + ([("4P", large, large_second)] if large else [])
    for size, one, two in pairs:
        disk = two["stored"]["disk_total"] / one["stored"]["disk_total"]
        row_ratio = two["stored"]["rows_total"] / one["stored"]["rows_total"]
        rows.append((f"bytes of 2nd backup / 1st, disk ({size})",
                     f"{two['stored']['disk_total']:,} / {one['stored']['disk_total']:,} = {disk:.4f}",
                     "<= 0.02", mark(disk <= GOALS["bytes"])))
        rows.append((f"  rows ({size})", f"{two['stored']['rows_total']:,} / {one['stored']['rows_total']:,} = "
                     f"{row_ratio:.4f}", "<= 0.02", mark(row_ratio <= GOALS["bytes"])))
    if large:
        rss_ratio = large["rss_peak_kib"] / first["rss_peak_kib"]
        growth = [r["rss_peak_kib"] - r["rss_before_kib"] for r in (first, large)]
        rows.append((f"peak RSS of the backup, {first['policies']} -> {large['policies']} policies",
                     f"{first['rss_peak_kib'] / 1024:.0f} -> {large['rss_peak_kib'] / 1024:.0f} MiB = {rss_ratio:.2f}x",
                     "flat (<= 1.1x)", mark(rss_ratio <= GOALS["rss"])))
        rows.append(("  growth above the RSS before the backup",
                     f"{growth[0] / 1024:.1f} -> {growth[1] / 1024:.1f} MiB", "",
                     "grows with P" if growth[1] >= 2 * max(growth[0], 1024) else ""))
    if restore:
        plan, run = restore["plan"], restore["execute"]
        fp, fe = floors(plan), floors(run)
        rows.append((f"restore of {restore['items']} items, execute: wall / floor",
                     f"{run['wall']:.2f} / {fe['floor']:.2f} s = {run['wall'] / fe['floor']:.2f}", "<= 1.3",
                     mark(run["wall"] / fe["floor"] <= GOALS["floor"])))
        rows.append(("  execute: wall / client-bucket floor; time not paced by the buckets",
                     f"{run['wall'] / fe['client']:.2f}; {run['wall'] - run['paced']:.2f} s", "", ""))
        rows.append(("  plan: wall / its floor (information)",
                     f"{plan['wall']:.2f} / {fp['floor']:.2f} s = {plan['wall'] / fp['floor']:.2f}", "", ""))
        rows.append(("  plan + execute: wall / execute's floor",
                     f"{(plan['wall'] + run['wall']) / fe['floor']:.2f}", "", ""))
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print()
    print(f"{'measure':<{width}}  {'value':>{value_width}}  {'goal':<14} result")
    for name, value, goal, result in rows:
        print(f"{name:<{width}}  {value:>{value_width}}  {goal:<14} {result}")
    if profile:
        import pstats

        print("\n(profiled: the wall and CPU figures of A and R include cProfile's overhead)")
        for name in ("backup", "plan", "execute") if restore else ("backup",):
            print(f"\n--- {name}, by cumulative time ---")
            pstats.Stats(str(profile / f"{name}.prof")).sort_stats("cumulative").print_stats(30)
            print(f"\n--- {name}, by own time ---")
            pstats.Stats(str(profile / f"{name}.prof")).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
