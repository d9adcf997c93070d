"""Benchmark of the sync (app/sync/engine.py + app/graph/client.py) against the Graph simulator,
with latency and throttling on.

    .venv/bin/python bench/sync.py [--quick] [--policies-per-family 100] [--worker-tenants 6]
                                   [--time-scale 4] [--latency-ms 20]

It starts a throwaway PostgreSQL (bench/cluster.py), migrates it, and starts the Graph
simulator (`python -m simulator serve`, a process of its own so that its CPU is not counted
as the sync's) with `--latency-ms` on every HTTP request and Intune's documented per-tenant
limit, 1,000 requests per 20 s (each request inside a $batch counts), answered with 429 and
Retry-After when exceeded. Time is scaled by --time-scale K to keep the run short: the
simulator allows 1,000 requests per 20/K s and the client's own per-tenant token bucket
(app/graph/client.py: burst 100, 25 requests/s, i.e. at most 600 per 20 s) refills K times
faster; request counts, burst sizes and the latency are not scaled (so 20 ms at K=4 weighs
like 80 ms would at real speed). K=1 is real time. The simulator (werkzeug's server) closes
every connection after its answer, so each round trip pays a TCP connect and TLS handshake
on both sides, which real Graph (keep-alive) does not: CPU figures are a little high.

Each tenant has P policies per family (5 policy families: 5P policies), the demo's groups,
roles, filters and scope tags. Every sync runs as the web app's role, inside its workspace
(row-level security), in a fresh process:
  A. first sync of a tenant with P per family: HTTP round trips per policy (the run's
     `requests` / policies), wall time against the two throttling floors, CPU time
     (`time.process_time` of the process around the sync), peak RSS;
  C. a re-sync of the same tenant, nothing changed in Graph: INSERT/UPDATE/DELETE on
     policies, policy_versions, entra_groups, inventory_items, entra_role_definitions
     (a SQLAlchemy before/after_cursor_execute listener, and pg_stat_user_tables deltas);
  B. first sync of a tenant with 4P per family: peak RSS (and the same counts);
  W. throughput of real `flask worker --queue sync --concurrency 1` processes (as the app
     role): N tenants' syncs queued at once (after the workers are up and listening),
     tenants/second from the queueing commit to the last run's finish, with 1 process and
     then with 2 processes (other tenants, same size), and, for information, 1 process
     with --concurrency 4 (the command's default).

The floors: requests counted by the simulator's throttle (admitted GETs, inner $batch
requests included, the outer $batch POST not) divided by the allowed rate: 1,000 per
20/K s (the simulator's limit) or 25*K per s (the client's bucket, the binding one).
Both ignore the bucket's initial burst of 100 and the window's, so a sync of a few
hundred requests can come in under them; they are steady-state floors.

Peak RSS: the child resets its high-water mark (/proc/self/clear_refs) just before the
sync, so getrusage's maxrss is the sync's own peak, not create_app's (Argon2's 64 MiB).
`--profile DIR` runs syncs A and C under cProfile and prints their top functions (their
time and CPU figures then include the profiler's overhead). Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

WRITE_TABLES = ("policies", "policy_versions", "entra_groups", "inventory_items", "entra_role_definitions")
INTUNE_REQUESTS, INTUNE_WINDOW = 1000, 20.0  # per app per tenant (ThrottleLimits' defaults)
WRITE_PATTERN = re.compile(r'^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?([A-Za-z_][A-Za-z0-9_]*)"?', re.I)
GOALS = {"round_trips": 0.15, "floor": 1.3, "rss": "flat", "writes": 0, "workers": 1.6}


# --- the simulator's loopback control API -------------------------------------------------------

class Control:
    def __init__(self, api_url: str, ca_bundle: str):
        import httpx

        self.api_url = api_url.rstrip("/")
        self.http = httpx.Client(verify=ssl.create_default_context(cafile=ca_bundle), trust_env=False, timeout=120)

    def call(self, method: str, path: str, body=None):
        response = self.http.request(method, f"{self.api_url}/_simulator{path}", json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    def add_tenant(self, tenant_id: str, policies_per_family: int) -> None:
        self.call("POST", "/tenants", {"tenant_id": tenant_id, "name": f"Bench {tenant_id[:8]}",
                                       "policies_per_family": policies_per_family})

    def reset_log(self) -> None:
        self.call("DELETE", "/requests")

    def counted_requests(self, tenant_id: str) -> dict:
        """What the throttle counted for the tenant since the last reset, and what it refused."""
        records = [r for r in self.call("GET", "/requests")["value"]
                   if r["server"] == "api" and r["tenant_id"] == tenant_id]
        outer_batches = [r for r in records if not r["in_batch"] and r["path"].endswith("/$batch")]
        counted = [r for r in records if r not in outer_batches and r["status"] != 429]
        return {"counted": len(counted), "refused_429": sum(r["status"] == 429 for r in records),
                "outer": sum(not r["in_batch"] for r in records)}


def start_simulator(state_dir: Path, latency_ms: float, time_scale: float, page_size: int):
    from simulator.core import free_port

    command = [sys.executable, "-m", "simulator", "serve", "--state-dir", str(state_dir),
               "--api-port", str(free_port()), "--login-port", str(free_port()),
               "--latency-ms", str(latency_ms), "--page-size", str(page_size),
               "--throttle-requests", str(INTUNE_REQUESTS), "--throttle-window", str(INTUNE_WINDOW / time_scale)]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    deadline = time.monotonic() + 60
    for line in process.stdout:
        if line.startswith("Graph simulator serving"):
            break
        if time.monotonic() > deadline:
            break
    if process.poll() is not None or not (state_dir / "connection.env").is_file():
        raise SystemExit("the Graph simulator did not start")
    environment = dict(line.split("=", 1) for line in (state_dir / "connection.env").read_text().splitlines() if line)
    return process, environment


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- one sync in this process (the child) ----------------------------------------------------------

def current_rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM and getrusage's ru_maxrss)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def child(spec: dict) -> None:
    """Carry out one sync run of spec's tenant, as the app role, and print what it measured."""
    import resource

    from sqlalchemy import event, func, select

    from app import create_app
    from app.extensions import db
    from app.graph.client import DEFAULT_BURST, DEFAULT_RATE_PER_SECOND, GraphClient, TokenBucket
    from app.models import Policy, SyncRun, Tenant
    from app.row_security import working_in_workspace
    from app.sync.engine import SyncContext, create_run, run_sync
    from app.sync.runner import graph_settings, sync_interval, token_provider

    control = Control(os.environ["GRAPH_API_URL"], os.environ["GRAPH_CA_BUNDLE"])
    app = create_app(database_role="app")
    clients: list[GraphClient] = []

    def client_factory(tenant_id, provider):
        # What app.sync.runner.sync_context makes, but with a fresh bucket of the client's
        # default size refilled --time-scale times faster (a new tenant's bucket starts full).
        bucket = TokenBucket(DEFAULT_BURST, DEFAULT_RATE_PER_SECOND * spec["time_scale"])
        client = GraphClient(graph_settings(app), tenant_id, token_provider=provider, rate_limit=bucket)
        clients.append(client)
        return client

    writes: dict[str, list[int]] = {}  # table -> [statements, rows]
    pending: list = []

    def before(conn, cursor, statement, parameters, context, executemany):
        match = WRITE_PATTERN.match(statement)
        pending.append((match.group(2).lower(), len(parameters) if executemany else None) if match else None)

    def after(conn, cursor, statement, parameters, context, executemany):
        item = pending.pop() if pending else None
        if item is not None:
            table, many = item
            rows = cursor.rowcount if cursor.rowcount is not None and cursor.rowcount >= 0 else (many or 0)
            counts = writes.setdefault(table, [0, 0])
            counts[0] += 1
            counts[1] += rows

    with app.app_context(), working_in_workspace(spec["workspace_id"]):
        tenant = db.session.get(Tenant, spec["tenant_id"])
        external_id = str(tenant.external_id)
        run = create_run(tenant, "command")
        db.session.commit()
        run_id = run.id
        context = SyncContext(token_provider=token_provider(app), client_factory=client_factory,
                              interval=sync_interval(app))
        control.reset_log()
        process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # start-up included
        # The process's peak so far is its start-up's (create_app's Argon2 dummy hash takes
        # 64 MiB for a moment): reset the high-water mark so that maxrss is the sync's own peak.
        peak_reset = reset_peak_rss()
        rss_before = current_rss_kib()
        event.listen(db.engine, "before_cursor_execute", before)
        event.listen(db.engine, "after_cursor_execute", after)
        profiler = None
        if spec.get("profile"):
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        started, cpu_started = time.perf_counter(), time.process_time()
        run = run_sync(run_id, context)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(spec["profile"])
        event.remove(db.engine, "before_cursor_execute", before)
        event.remove(db.engine, "after_cursor_execute", after)
        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run = db.session.get(SyncRun, run_id)
        policies = db.session.scalar(select(func.count()).select_from(Policy)
                                     .where(Policy.tenant_id == spec["tenant_id"], Policy.deleted_at.is_(None)))
        result = {
            "status": run.status, "error": run.error, "requests": run.requests, "throttled": run.throttled,
            "policies": policies, "wall": wall, "cpu": cpu, "rss_before_kib": rss_before, "rss_peak_kib": rss_peak,
            "peak_reset": peak_reset, "process_peak_kib": max(process_peak, rss_peak),
            "client": clients[0].stats.as_dict() if clients else {}, "writes": writes,
            "families": {key: {k: v for k, v in value.items() if k in ("seen", "new", "changed", "unchanged", "deleted")}
                         for key, value in (run.families or {}).items()},
            **control.counted_requests(external_id),
        }
    print("RESULT " + json.dumps(result), flush=True)


# --- the parent ----------------------------------------------------------------------------------

def child_sync(env: dict, spec: dict) -> dict:
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    found = re.search(r"^RESULT (.*)$", result.stdout, re.M)
    if result.returncode != 0 or not found:
        raise SystemExit(f"the sync child failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    outcome = json.loads(found.group(1))
    if outcome["status"] != "succeeded":
        raise SystemExit(f"the sync did not succeed: {outcome['status']}: {outcome['error']}")
    return outcome


def table_counters(cluster, database: str) -> dict[str, int]:
    with cluster.conn(database) as conn:
        rows = conn.execute("SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables "
                            "WHERE relname = ANY(%s)", (list(WRITE_TABLES),)).fetchall()
    return dict(rows)


def run_workers(cluster, database: str, env: dict, app, tenants: list[tuple[int, int]], processes: int,
                concurrency: int, time_scale: float) -> dict:
    """Start the workers, wait until they listen, queue one sync per tenant, time them all."""
    from app.extensions import db
    from app.models import Tenant
    from app.row_security import working_in_workspace
    from app.sync.runner import request_sync

    launcher = ("import sys; import app.graph.client as client; "
                f"client.DEFAULT_RATE_PER_SECOND = client.DEFAULT_RATE_PER_SECOND * {time_scale!r}; "
                f"sys.argv = ['flask', 'worker', '--queue', 'sync', '--concurrency', '{concurrency}']; "
                "from flask.cli import main; main()")
    logs = [tempfile.TemporaryFile(mode="w+") for _ in range(processes)]
    workers = [subprocess.Popen([sys.executable, "-c", launcher], cwd=PROJECT_ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=log) for log in logs]
    try:
        deadline = time.monotonic() + 60
        while True:  # each worker has said it starts, then LISTENs for new jobs
            ready = 0
            for log in logs:
                log.seek(0)
                ready += "TenantAtlas worker:" in log.read()
            if ready == processes:
                break
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                raise SystemExit("a worker did not start")
            time.sleep(0.1)
        time.sleep(2.0)
        run_ids = []
        with app.app_context():
            for tenant_id, workspace_id in tenants:
                with working_in_workspace(workspace_id):
                    tenant = db.session.get(Tenant, tenant_id)
                    run, _created = request_sync(tenant, "user")
                    run_ids.append(run.id)
            queued_at = time.time()
            db.session.commit()  # all jobs visible at once
            db.session.remove()
        deadline = time.monotonic() + 600
        with cluster.conn(database) as conn:
            while True:
                done, finished, failed = conn.execute(
                    "SELECT count(*) FILTER (WHERE status NOT IN ('queued', 'running')), "
                    "extract(epoch FROM max(finished_at)), count(*) FILTER (WHERE status NOT IN "
                    "('queued', 'running', 'succeeded')) FROM sync_runs WHERE id = ANY(%s)", (run_ids,)).fetchone()
                if done == len(run_ids):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("the workers did not finish in 10 minutes")
                time.sleep(0.2)
        if failed:
            raise SystemExit(f"{failed} worker sync(s) did not succeed")
        seconds = float(finished) - queued_at
        return {"tenants": len(run_ids), "seconds": seconds, "per_second": len(run_ids) / seconds}
    finally:
        for worker in workers:
            stop(worker)
        for log in logs:
            log.close()


def mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run (P=25, 4 worker tenants)")
    parser.add_argument("--policies-per-family", type=int, default=None, help="P (default 100; --quick 25)")
    parser.add_argument("--worker-tenants", type=int, default=None, help="N (default 6; --quick 4)")
    parser.add_argument("--time-scale", type=float, default=4.0,
                        help="K: the throttle window is 20/K s and the client bucket refills K times faster")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--no-concurrency-4", action="store_true", help="skip the informational concurrency-4 run")
    parser.add_argument("--profile", default=None, metavar="DIR",
                        help="profile syncs A and C with cProfile into DIR (inflates their time and CPU figures)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))

    from sqlalchemy.engine import make_url

    from app import create_app
    from app.database import APP_ROLE
    from app.graph.client import DEFAULT_BURST, DEFAULT_RATE_PER_SECOND
    from bench.cluster import bench_cluster

    per_family = args.policies_per_family or (25 if args.quick else 100)
    worker_tenants = args.worker_tenants or (4 if args.quick else 6)
    scale = args.time_scale
    bench_started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tenantatlas-sync-bench-sim-") as state_dir, \
            bench_cluster("tenantatlas-sync-bench-") as cluster:
        database = "sync_bench"
        cluster.create(database)
        owner_url = cluster.url_for(database)
        app_url = make_url(owner_url).set(username=APP_ROLE, password=None).render_as_string(hide_password=False)
        base_env = {**os.environ, "TENANTATLAS_ENV": "test", "SECRET_KEY": "bench"}
        subprocess.run([sys.executable, "-m", "flask", "db", "upgrade"], cwd=PROJECT_ROOT, check=True,
                       env={**base_env, "DATABASE_URL": owner_url}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        simulator, graph_env = start_simulator(Path(state_dir), args.latency_ms, scale, args.page_size)
        try:
            control = Control(graph_env["GRAPH_API_URL"], graph_env["GRAPH_CA_BUNDLE"])
            env = {**base_env, **graph_env, "DATABASE_URL": app_url}
            # Tenants: A (P), B (4P), and the workers' (P each), in one workspace, connected.
            sizes = [per_family, 4 * per_family] + [per_family] * (worker_tenants * (2 if args.no_concurrency_4 else 3))
            externals = [str(uuid.uuid4()) for _ in sizes]
            for external, size in zip(externals, sizes):
                control.add_tenant(external, size)
            with cluster.conn(database) as conn:
                workspace_id = conn.execute("INSERT INTO workspaces (slug, name) VALUES ('sync-bench', 'Sync bench') "
                                            "RETURNING id").fetchone()[0]
                tenant_ids = [conn.execute(
                    "INSERT INTO tenants (workspace_id, external_id, name, connection_status) "
                    "VALUES (%s, %s, %s, 'connected') RETURNING id",
                    (workspace_id, external, f"Bench {external[:8]}")).fetchone()[0] for external in externals]
            spec = {"workspace_id": workspace_id, "time_scale": scale}
            print(f"P = {per_family} policies per family (5 families), time scale K = {scale:g}, "
                  f"latency {args.latency_ms:g} ms, page size {args.page_size}", flush=True)

            profile = Path(args.profile).resolve() if args.profile else None
            if profile:
                profile.mkdir(parents=True, exist_ok=True)
            initial = table_counters(cluster, database)
            first = child_sync(env, {**spec, "tenant_id": tenant_ids[0],
                                     "profile": str(profile / "first.prof") if profile else None})
            print(f"A. first sync, {first['policies']} policies: {first['wall']:.2f} s", flush=True)
            time.sleep(1.0)  # the child's backend flushes its table statistics when it exits
            before = table_counters(cluster, database)
            resync = child_sync(env, {**spec, "tenant_id": tenant_ids[0],
                                      "profile": str(profile / "resync.prof") if profile else None})
            time.sleep(1.0)  # the child's backend flushes its table statistics when it exits
            after = table_counters(cluster, database)
            print(f"C. no-change re-sync: {resync['wall']:.2f} s", flush=True)
            large = child_sync(env, {**spec, "tenant_id": tenant_ids[1]})
            print(f"B. first sync, {large['policies']} policies: {large['wall']:.2f} s", flush=True)

            app = create_app({"TENANTATLAS_ENV": "test", "SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": app_url},
                             database_role="app")
            worker_pool = list(zip(tenant_ids[2:], [workspace_id] * len(tenant_ids)))
            groups = [worker_pool[i * worker_tenants:(i + 1) * worker_tenants] for i in range(3)]
            one = run_workers(cluster, database, env, app, groups[0], 1, 1, scale)
            print(f"W. 1 worker process: {one['tenants']} tenants in {one['seconds']:.2f} s", flush=True)
            two = run_workers(cluster, database, env, app, groups[1], 2, 1, scale)
            print(f"W. 2 worker processes: {two['tenants']} tenants in {two['seconds']:.2f} s", flush=True)
            four = None
            if not args.no_concurrency_4:
                four = run_workers(cluster, database, env, app, groups[2], 1, 4, scale)
                print(f"W. 1 worker process, concurrency 4: {four['tenants']} tenants in {four['seconds']:.2f} s",
                      flush=True)
        finally:
            stop(simulator)

    sim_rate = INTUNE_REQUESTS / (INTUNE_WINDOW / scale)
    client_rate = DEFAULT_RATE_PER_SECOND * scale

    def describe(name: str, r: dict) -> None:
        sim_floor, client_floor = r["counted"] / sim_rate, r["counted"] / client_rate
        print(f"{name}: {r['policies']} policies, {r['requests']} round trips "
              f"({r['client'].get('inner_requests', 0)} inner $batch requests), {r['counted']} requests counted by "
              f"the throttle, {r['refused_429']} refused with 429; wall {r['wall']:.2f} s, CPU {r['cpu']:.2f} s; "
              f"floors: simulator {sim_floor:.2f} s, client bucket {client_floor:.2f} s; "
              f"RSS {r['rss_before_kib'] / 1024:.0f} MiB before the sync, peak during it "
              f"{r['rss_peak_kib'] / 1024:.0f} MiB{'' if r['peak_reset'] else ' (PEAK NOT RESET: start-up included)'}, "
              f"process peak with start-up {r['process_peak_kib'] / 1024:.0f} MiB")

    print(f"\nTotal {time.monotonic() - bench_started:.0f} s. Simulator limit 1,000 requests per "
          f"{INTUNE_WINDOW / scale:g} s ({sim_rate:g}/s); client bucket burst {DEFAULT_BURST:g}, {client_rate:g}/s.")
    describe("A (first sync, P)", first)
    describe("C (no-change re-sync, P)", resync)
    describe("B (first sync, 4P)", large)
    five_writes = {t: resync["writes"].get(t, [0, 0]) for t in WRITE_TABLES}
    other_writes = {t: c for t, c in resync["writes"].items() if t not in WRITE_TABLES}
    stat_delta = {t: after.get(t, 0) - before.get(t, 0) for t in WRITE_TABLES}
    first_stat_delta = sum(before.get(t, 0) - initial.get(t, 0) for t in WRITE_TABLES)
    first_listener = sum(rows_ for t, (_s, rows_) in first["writes"].items() if t in WRITE_TABLES)
    print(f"(check of both counting methods on the first sync A: listener {first_listener} rows, "
          f"pg_stat_user_tables {first_stat_delta} rows)")
    print(f"C writes (statements, rows) to the five tables: {five_writes}; pg_stat_user_tables delta: {stat_delta}; "
          f"to other tables: {other_writes}")

    rows = []
    rt = first["requests"] / first["policies"]
    rows.append(("HTTP round trips per policy (first sync, P)", f"{rt:.3f}", "<= 0.15", mark(rt <= 0.15)))
    rt_b = large["requests"] / large["policies"]
    rows.append(("HTTP round trips per policy (first sync, 4P)", f"{rt_b:.3f}", "<= 0.15", mark(rt_b <= 0.15)))
    for name, r in (("first sync, P", first), ("re-sync, P", resync), ("first sync, 4P", large)):
        ratio_sim = r["wall"] / (r["counted"] / sim_rate)
        ratio_client = r["wall"] / (r["counted"] / client_rate)
        rows.append((f"wall / simulator floor ({name})", f"{ratio_sim:.2f}", "<= 1.3", mark(ratio_sim <= 1.3)))
        rows.append((f"wall / client-bucket floor ({name})", f"{ratio_client:.2f}", "<= 1.3",
                     mark(ratio_client <= 1.3)))
    for name, r in (("first sync, P", first), ("re-sync, P", resync), ("first sync, 4P", large)):
        rows.append((f"CPU ms per 1,000 policies ({name})", f"{r['cpu'] * 1000 / r['policies'] * 1000:,.0f}",
                     "(reported)", ""))
    rss_ratio = large["rss_peak_kib"] / first["rss_peak_kib"]
    growth = [r["rss_peak_kib"] - r["rss_before_kib"] for r in (first, large)]
    rows.append((f"peak RSS of the sync, {first['policies']} -> {large['policies']} policies",
                 f"{first['rss_peak_kib'] / 1024:.0f} -> {large['rss_peak_kib'] / 1024:.0f} MiB = {rss_ratio:.2f}x",
                 "flat (<= 1.1x)", mark(rss_ratio <= 1.1)))
    rows.append(("  growth above the RSS before the sync", f"{growth[0] / 1024:.0f} -> {growth[1] / 1024:.0f} MiB",
                 "", "grows with P" if growth[1] >= 2 * max(growth[0], 1024) else ""))
    rows_written = sum(rows_ for _s, rows_ in five_writes.values())
    statements = sum(s for s, _r in five_writes.values())
    rows.append(("rows written by a no-change re-sync (listener)", f"{rows_written} ({statements} statements)", "0",
                 mark(rows_written == 0)))
    rows.append(("  (pg_stat_user_tables delta)", f"{sum(stat_delta.values())}", "0", mark(sum(stat_delta.values()) == 0)))
    scaling = two["per_second"] / one["per_second"]
    rows.append((f"worker throughput, tenants/s (1 -> 2 processes)",
                 f"{one['per_second']:.3f} -> {two['per_second']:.3f} = {scaling:.2f}x", ">= 1.6", mark(scaling >= 1.6)))
    if four:
        rows.append(("  1 process, concurrency 4 (information)",
                     f"{four['per_second']:.3f} = {four['per_second'] / one['per_second']:.2f}x", "", ""))
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print()
    print(f"{'measure':<{width}}  {'value':>{value_width}}  {'goal':<14} result")
    for name, value, goal, result in rows:
        print(f"{name:<{width}}  {value:>{value_width}}  {goal:<14} {result}")
    if profile:
        import pstats

        print("\n(profiled: the wall and CPU figures of A and C above include cProfile's overhead)")
        for name in ("first", "resync"):
            print(f"\n--- {name} sync, by own time ---")
            pstats.Stats(str(profile / f"{name}.prof")).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
