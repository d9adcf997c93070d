"""Benchmark of the workspace_id backfill and of phase 3, against the database's own floor.

    .venv/bin/python bench/backfill.py [--rows 1000000] [--factors 1,4] [--batch-size 5000]

For each size (rows x factor) it builds a database of tenant-owned rows spread like
the demo data (`flask seed-demo --scale`), brings it to phase 1 with every
workspace_id unset, and then, on identical copies (CREATE DATABASE ... TEMPLATE):
  (a) the floor: one plain `UPDATE ... FROM tenants` per table;
  (b) `flask backfill-workspace-ids` as an operator runs it (a separate process);
then phase 3 (`flask db upgrade`) on (b)'s result, while another connection samples
pg_locks every 2 ms for ACCESS EXCLUSIVE locks on the tenant-owned tables.
It prints rows/s of (a) and (b) and their ratio, the longest batch transaction, the
backfill process's peak memory, the longest ACCESS EXCLUSIVE hold seen and phase 3's
total time. Needs no DATABASE_URL: it starts its own embedded PostgreSQL in a
temporary directory (or uses BENCH_ADMIN_URL, a superuser conninfo).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path


PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from app.rollout import DEFAULT_BATCH_SIZE, TENANT_OWNED_TABLES  # noqa: E402
from bench.cluster import Cluster, bench_cluster  # noqa: E402

FLASK = str(Path(sys.executable).with_name("flask"))
ROWS_PER_SCALE = 33_000  # what one `seed-demo --scale 1` writes to the tenant-owned tables (60 tenants)


def flask(cluster: Cluster, database: str, *args: str, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": cluster.url_for(database), "TENANTATLAS_ENV": "test", "SECRET_KEY": "bench"}
    result = subprocess.run([FLASK, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def build_source(cluster: Cluster, name: str, rows: int) -> int:
    """A phase-1 database with about `rows` tenant-owned rows, none bound. Returns the exact count."""
    cluster.create(name)
    flask(cluster, name, "db", "upgrade")
    scale = max(1, round(rows / ROWS_PER_SCALE))
    flask(cluster, name, "seed-demo", "--scale", str(scale))
    flask(cluster, name, "db", "downgrade", "0003_workspace_id_phase1")
    with cluster.conn(name) as conn:
        total = 0
        for table in TENANT_OWNED_TABLES:
            conn.execute(f"UPDATE {table} SET workspace_id = NULL")
            total += conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        conn.execute("UPDATE audit_logs SET workspace_id = NULL WHERE tenant_id IS NOT NULL")
        conn.execute("VACUUM (FULL, ANALYZE)")
        conn.execute("CHECKPOINT")
    return total


def floor(cluster: Cluster, database: str) -> float:
    with cluster.conn(database) as conn:
        started = time.perf_counter()
        for table in TENANT_OWNED_TABLES:
            conn.execute(f"UPDATE {table} t SET workspace_id = tn.workspace_id FROM tenants tn "
                         f"WHERE tn.id = t.tenant_id AND t.workspace_id IS NULL")
        return time.perf_counter() - started


def backfill(cluster: Cluster, database: str, batch_size: int) -> tuple[float, float, int]:
    """(seconds, longest batch seconds, peak RSS in KiB, batches, batches over 250 ms)."""
    env = {**os.environ, "DATABASE_URL": cluster.url_for(database), "TENANTATLAS_ENV": "test", "SECRET_KEY": "bench"}
    command = ["backfill-workspace-ids", "--batch-size", str(batch_size),
               *sum((["--table", t] for t in TENANT_OWNED_TABLES), [])]
    # The flask CLI, run so that the process reports its own peak resident memory on exit.
    launcher = ("import atexit, resource, sys; "
                "atexit.register(lambda: print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)); "
                f"sys.argv = ['flask'] + {command!r}; "
                "from flask.cli import main; main()")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", launcher], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"backfill failed:\n{result.stdout}\n{result.stderr}")
    if os.environ.get("BENCH_VERBOSE"):
        print(result.stdout, file=sys.stderr)
    longest = max(float(ms) for ms in re.findall(r"longest batch (\d+) ms", result.stdout)) / 1000
    batches = sum(int(n) for n in re.findall(r"(\d+) batches", result.stdout))
    slow = sum(int(n) for n in re.findall(r"(\d+) over \d+ ms", result.stdout))
    peak_kib = int(re.search(r"PEAK_RSS_KIB (\d+)", result.stdout).group(1))
    return seconds, longest, peak_kib, batches, slow


def phase3(cluster: Cluster, database: str) -> tuple[float, float]:
    """(total seconds, longest ACCESS EXCLUSIVE hold seen) of `flask db upgrade` to phase 3."""
    stop = threading.Event()
    longest = [0.0]

    def sample():
        held_since: dict = {}
        with cluster.conn(database) as conn:
            while not stop.is_set():
                now = time.perf_counter()
                rows = conn.execute(
                    "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                    "WHERE l.mode = 'AccessExclusiveLock' AND l.granted AND c.relname = ANY(%s)",
                    (list(TENANT_OWNED_TABLES) + ["audit_logs"],)).fetchall()
                current = {row[0] for row in rows}
                for name in list(held_since):
                    if name not in current:
                        longest[0] = max(longest[0], now - held_since.pop(name))
                for name in current:
                    held_since.setdefault(name, now)
                time.sleep(0.002)
            for name, since in held_since.items():
                longest[0] = max(longest[0], time.perf_counter() - since)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    flask(cluster, database, "db", "upgrade")
    total = time.perf_counter() - started
    stop.set()
    sampler.join()
    return total, longest[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="tenant-owned rows at factor 1")
    parser.add_argument("--factors", default="1,4", help="sizes to run, as multiples of --rows")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    args = parser.parse_args()

    print(f"{'rows':>10} {'floor rows/s':>13} {'backfill rows/s':>16} {'ratio':>6} {'longest batch':>14} "
          f"{'>250ms/all':>12}"
          f"{'peak RSS':>9} {'phase 3':>8} {'max ACCESS EXCLUSIVE':>21}")
    with bench_cluster("tenantatlas-bench-") as cluster:
        for factor in (int(f) for f in args.factors.split(",")):
            source = f"bench_source_{factor}"
            rows = build_source(cluster, source, args.rows * factor)
            cluster.create(f"bench_floor_{factor}", template=source)
            cluster.create(f"bench_backfill_{factor}", template=source)
            floor_seconds = floor(cluster, f"bench_floor_{factor}")
            backfill_seconds, longest_batch, peak_kib, batches, slow = backfill(
                cluster, f"bench_backfill_{factor}", args.batch_size)
            flask(cluster, f"bench_backfill_{factor}", "backfill-workspace-ids", "--table", "audit_logs")
            phase3_seconds, longest_lock = phase3(cluster, f"bench_backfill_{factor}")
            print(f"{rows:>10,} {rows / floor_seconds:>13,.0f} {rows / backfill_seconds:>16,.0f} "
                  f"{floor_seconds / backfill_seconds:>6.2f} {longest_batch * 1000:>11.0f} ms "
                  f"{slow:>5}/{batches:<6}"
                  f"{peak_kib / 1024:>6.0f} MB {phase3_seconds:>6.1f} s {longest_lock * 1000:>18.0f} ms", flush=True)


if __name__ == "__main__":
    main()
