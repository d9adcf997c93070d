"""Benchmark: what the tenant_health triggers (migration 0007) cost writers, and what a full refresh costs.

    .venv/bin/python bench/health_triggers.py [--scale 20] [--policies-per-tenant 250] [--tenants 300]

Two databases at head, identical but for one thing: in the baseline the health
triggers are disabled (ALTER TABLE ... DISABLE TRIGGER USER). On each, in the same run:
  - the bulk load: `flask seed-demo --scale S --policies-per-tenant P` (set-based inserts);
  - a sync-like write path: for --tenants tenants, one transaction inserting 50 policies,
    then one deleting them;
  - triage: single-row finding status changes, one transaction each;
  - bulk: one UPDATE acknowledging every open finding, one reopening them;
then `flask refresh-tenant-health` on the baseline (triggers enabled again): the cost of
populating or repairing the summary at that size (what migration 0007 does on upgrade).
Prints seconds and the ratio with/without triggers for each. Starts its own embedded
PostgreSQL in a temporary directory (or uses BENCH_ADMIN_URL, a superuser conninfo).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from bench.cluster import bench_cluster  # noqa: E402

FLASK = str(Path(sys.executable).with_name("flask"))
TRIGGERED_TABLES = ("tenants", "policies", "findings", "tenant_permissions", "backup_sets")


def flask(url: str, *args: str) -> float:
    env = {**os.environ, "DATABASE_URL": url, "TENANTATLAS_ENV": "test", "SECRET_KEY": "bench"}
    started = time.perf_counter()
    subprocess.run([FLASK, *args], cwd=PROJECT_ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def sync_workload(conninfo: str, tenants: int) -> float:
    """Per tenant: insert 50 policies in one statement and commit; then delete them and commit."""
    with psycopg.connect(conninfo) as conn:
        ids = conn.execute("SELECT id, workspace_id FROM tenants ORDER BY id LIMIT %s", (tenants,)).fetchall()
        conn.commit()
        started = time.perf_counter()
        for tenant_id, workspace_id in ids:
            conn.execute(
                "INSERT INTO policies (tenant_id, workspace_id, graph_id, policy_type, platform, display_name, settings) "
                "SELECT %s, %s, 'sync-' || g, 'deviceConfiguration', 'windows10', 'Synced ' || g, "
                "jsonb_build_object('n', g) FROM generate_series(1, 50) g", (tenant_id, workspace_id))
            conn.commit()
        for tenant_id, _ in ids:
            conn.execute("DELETE FROM policies WHERE tenant_id = %s AND graph_id LIKE 'sync-%%'", (tenant_id,))
            conn.commit()
        return time.perf_counter() - started


def triage_workload(conninfo: str, changes: int) -> float:
    """Single-row finding status changes, each its own transaction (as the triage page does)."""
    with psycopg.connect(conninfo) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM findings ORDER BY id LIMIT %s", (changes,))]
        conn.commit()
        started = time.perf_counter()
        for n, finding_id in enumerate(ids):
            conn.execute("UPDATE findings SET status = %s WHERE id = %s",
                         ("resolved" if n % 2 else "acknowledged", finding_id))
            conn.commit()
        return time.perf_counter() - started


def bulk_workload(conninfo: str) -> tuple[float, int]:
    """One statement acknowledging every open finding of every tenant, one reopening them."""
    with psycopg.connect(conninfo) as conn:
        started = time.perf_counter()
        changed = conn.execute("UPDATE findings SET status = 'acknowledged' WHERE status = 'open'").rowcount
        conn.commit()
        conn.execute("UPDATE findings SET status = 'open' WHERE status = 'acknowledged'")
        conn.commit()
        return time.perf_counter() - started, changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--policies-per-tenant", type=int, default=250)
    parser.add_argument("--tenants", type=int, default=300, help="tenants of the sync workload")
    parser.add_argument("--triage", type=int, default=2000, help="finding changes of the triage workload")
    args = parser.parse_args()

    with bench_cluster("tenantatlas-health-bench-") as cluster:
        results: dict[str, dict[str, float]] = {}
        for name in ("without", "with"):
            database = f"health_{name}"
            cluster.create(database)
            flask(cluster.url_for(database), "db", "upgrade")
            if name == "without":
                with cluster.conn(database) as conn:
                    for table in TRIGGERED_TABLES:
                        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            seed = flask(cluster.url_for(database), "seed-demo", "--scale", str(args.scale),
                         "--policies-per-tenant", str(args.policies_per_tenant))
            with cluster.conn(database) as conn:
                conn.execute("VACUUM ANALYZE")
            bulk, bulk_rows = bulk_workload(cluster.conninfo(database))
            results[name] = {"seed": seed, "sync": sync_workload(cluster.conninfo(database), args.tenants),
                             "triage": triage_workload(cluster.conninfo(database), args.triage), "bulk": bulk}
            print(f"{name} triggers: " + ", ".join(f"{k} {v:.2f}s" for k, v in results[name].items()), flush=True)
        with cluster.conn("health_without") as conn:
            for table in TRIGGERED_TABLES:
                conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
            counts = conn.execute("SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM policies)").fetchone()
        refresh = flask(cluster.url_for("health_without"), "refresh-tenant-health")

        print(f"\n{counts[0]:,} tenants, {counts[1]:,} policies")
        print(f"{'workload':<40} {'without':>9} {'with':>9} {'ratio':>7}")
        labels = {"seed": "bulk load (seed-demo)",
                  "sync": f"sync: {args.tenants} x insert 50 + delete 50",
                  "triage": f"triage: {args.triage} single-row updates",
                  "bulk": f"bulk: 2 updates of {bulk_rows:,} findings"}
        for key, label in labels.items():
            without, with_ = results["without"][key], results["with"][key]
            print(f"{label:<40} {without:>8.2f}s {with_:>8.2f}s {with_ / without:>7.2f}")
        print(f"refresh-tenant-health (every tenant, one per transaction): {refresh:.2f}s "
              f"({refresh / counts[0] * 1000:.2f} ms per tenant)")


if __name__ == "__main__":
    main()
