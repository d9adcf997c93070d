"""Benchmark: drift evaluation per tenant, the drift matrix page, and CSV export memory.

    .venv/bin/python bench/drift.py [--small-scale 4] [--large-scale 67] [--policies-per-tenant 24]
                                    [--sample 100] [--matrix-requests 200] [--csv-rows 10000,100000]

Starts a throwaway embedded PostgreSQL (or uses BENCH_ADMIN_URL) and builds two demo
databases with `flask seed-demo` (which evaluates every tenant's findings with the
findings engine and assigns the "MSP Standard" baseline through the "Managed" tag):
small (--small-scale x 60 tenants) and large (--large-scale x 60; at 67, 4,020 tenants,
2,010 in the largest workspace). Then, in the same run:

1. Drift evaluation per tenant (app.drift.evaluate_tenant, as the app role inside the
   tenant's workspace, as the worker runs it) for --sample tenants of the largest
   workspace of each database: mean and p95 per tenant, and the ratio large / small
   (goal: flat, about 1.0; the cost must not grow with the number of tenants).
2. The drift matrix page (/admin/w/<slug>/baselines/<id>/matrix, random pages of 25
   tenants) with one client, in-process through the WSGI app as the app role, on the large
   database: p50 and p95 (goal: p95 <= 100 ms with the baseline on 2,000 tenants).
3. CSV export of N findings (/admin/w/<slug>/findings.csv) for each N of --csv-rows, each
   in a fresh process: peak RSS growth during the export (goal: flat, 100k about the same
   as 10k). The findings are synthetic rows added for this (titles "Bench <N> #i").
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from bench.cluster import bench_cluster  # noqa: E402

FLASK = str(Path(sys.executable).with_name("flask"))
APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")
OWNER_EMAIL = "olivia.chen@tenantatlas.demo"
PASSWORD = "atlas-demo-2026"
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def build(cluster, database: str, scale: int, policies: int) -> float:
    cluster.create(database)
    env = {**os.environ, "DATABASE_URL": cluster.url_for(database), "TENANTATLAS_ENV": "test", "SECRET_KEY": "bench"}
    env.pop("MIGRATION_DATABASE_URL", None)
    started = time.perf_counter()
    for args in (["db", "upgrade"], ["seed-demo", "--scale", str(scale), "--policies-per-tenant", str(policies)]):
        subprocess.run([FLASK, *args], cwd=PROJECT_ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    with cluster.conn(database) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def app_for(url: str):
    from app import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": url, "TENANTATLAS_ENV": "test", "SECRET_KEY": "bench",
                       "RATELIMIT_ENABLED": False, "SESSION_COOKIE_SECURE": False}, database_role="app")


def app_url(cluster, database: str) -> str:
    return cluster.url_for(database).replace("postgres@", f"{APP_ROLE}@", 1)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def evaluation_times(cluster, database: str, sample: int) -> dict:
    from app.drift import evaluate_tenant_by_id
    from app.extensions import db
    from app.row_security import working_in_workspace

    with cluster.conn(database) as conn:
        total = conn.execute("SELECT count(*) FROM tenants").fetchone()[0]
        workspace_id = conn.execute("SELECT workspace_id FROM tenants GROUP BY workspace_id "
                                    "ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
        tenant_ids = [r[0] for r in conn.execute(
            "SELECT id FROM tenants WHERE workspace_id = %s AND status = 'active' ORDER BY random() LIMIT %s",
            (workspace_id, sample))]
    app = app_for(app_url(cluster, database))
    times = []
    with app.app_context(), working_in_workspace(workspace_id):
        evaluate_tenant_by_id(tenant_ids[0])  # warm-up: connections, caches
        for tenant_id in tenant_ids:
            started = time.perf_counter()
            evaluate_tenant_by_id(tenant_id)
            times.append((time.perf_counter() - started) * 1000)
        db.session.remove()
        db.engine.dispose()
    return {"tenants": total, "mean": statistics.mean(times), "p95": percentile(times, 95)}


def signed_in_client(app):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    match = CSRF_RE.search(page)
    token = match.group(1) or match.group(2)
    response = client.post("/login", data={"email": OWNER_EMAIL, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.status_code
    return client


def matrix_times(cluster, database: str, requests: int) -> dict:
    with cluster.conn(database) as conn:
        slug, baseline_id, assigned = conn.execute("""
            SELECT w.slug, b.id, (SELECT count(*) FROM tenant_tags tt JOIN baseline_assignments a
                                   ON a.tag_id = tt.tag_id WHERE a.baseline_id = b.id)
            FROM baselines b JOIN workspaces w ON w.id = b.workspace_id
            WHERE w.slug = 'atlas-managed-services'""").fetchone()
    app = app_for(app_url(cluster, database))
    client = signed_in_client(app)
    url = f"/admin/w/{slug}/baselines/{baseline_id}/matrix"
    assert client.get(url).status_code == 200
    pages = max(1, -(-assigned // 25))
    rng = random.Random(7)
    # Interleaved with the portfolio page (25 tenants a page too), measured in the same run: the
    # machine's noise hits both alike, and their ratio says what the matrix costs over a known page.
    times, portfolio = [], []
    for _ in range(requests):
        page = rng.randint(1, pages)
        started = time.perf_counter()
        response = client.get(f"{url}?page={page}")
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
        started = time.perf_counter()
        response = client.get(f"/admin/w/{slug}/managed-tenants?page={page}")
        portfolio.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return {"assigned": assigned, "p50": percentile(times, 50), "p95": percentile(times, 95),
            "portfolio_p50": percentile(portfolio, 50), "portfolio_p95": percentile(portfolio, 95)}


def add_bench_findings(cluster, database: str, rows: int) -> None:
    with cluster.conn(database) as conn:
        conn.execute("""
            INSERT INTO findings (tenant_id, workspace_id, kind, severity, title, detail, status, detected_at)
            SELECT t.id, t.workspace_id, 'drift', 'medium', 'Bench ' || %(n)s || ' #' || g,
                   jsonb_build_object('setting', 'device.passwordMinimumLength', 'expectedShown', '12',
                                      'actualShown', '=8+' || g),
                   'open', now()
            FROM generate_series(1, %(n)s) AS g
            JOIN LATERAL (SELECT id, workspace_id FROM tenants
                          WHERE workspace_id = (SELECT id FROM workspaces WHERE slug = 'atlas-managed-services')
                          ORDER BY id OFFSET (g %% 50) LIMIT 1) AS t ON true""", {"n": rows})
        conn.execute("ANALYZE findings")


def csv_child(url: str, rows: int) -> None:
    """In a fresh process: sign in, export, print peak RSS before and after and the rows read."""
    app = app_for(url)
    client = signed_in_client(app)
    warm = client.get("/admin/w/atlas-managed-services/findings.csv?status=all&q=nothing-matches")
    warm.get_data()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    response = client.get(f"/admin/w/atlas-managed-services/findings.csv?status=all&q=Bench+{rows}+%23",
                          buffered=False)
    lines = 0
    for chunk in response.response:
        lines += chunk.count(b"\n") if isinstance(chunk, bytes) else chunk.count("\n")
    response.close()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": lines - 1, "before_kb": before, "after_kb": after,
                      "seconds": time.perf_counter() - started}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small-scale", type=int, default=4)
    parser.add_argument("--large-scale", type=int, default=67)
    parser.add_argument("--policies-per-tenant", type=int, default=24)
    parser.add_argument("--sample", type=int, default=100)
    parser.add_argument("--matrix-requests", type=int, default=200)
    parser.add_argument("--csv-rows", default="10000,100000")
    parser.add_argument("--csv-child", nargs=2, metavar=("URL", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.csv_child:
        csv_child(args.csv_child[0], int(args.csv_child[1]))
        return

    with bench_cluster("tenantatlas-drift-") as cluster:
        built = {name: build(cluster, f"drift_{name}", scale, args.policies_per_tenant)
                 for name, scale in (("small", args.small_scale), ("large", args.large_scale))}
        print(f"built: small {built['small']:.0f}s, large {built['large']:.0f}s (seed with findings evaluation)")

        small = evaluation_times(cluster, "drift_small", args.sample)
        large = evaluation_times(cluster, "drift_large", args.sample)
        print("\n| database | tenants | evaluation mean | p95 |\n|---|---:|---:|---:|")
        for name, result in (("small", small), ("large", large)):
            print(f"| {name} | {result['tenants']:,} | {result['mean']:.1f} ms | {result['p95']:.1f} ms |")
        print(f"per-tenant cost, large / small: mean {large['mean'] / small['mean']:.2f}, "
              f"p95 {large['p95'] / small['p95']:.2f} (goal: about 1)")

        matrix = matrix_times(cluster, "drift_large", args.matrix_requests)
        print(f"\nmatrix page, baseline on {matrix['assigned']:,} tenants, one client, {args.matrix_requests} "
              f"requests: p50 {matrix['p50']:.1f} ms, p95 {matrix['p95']:.1f} ms (goal: p95 <= 100 ms)")
        print(f"portfolio page, same run, interleaved: p50 {matrix['portfolio_p50']:.1f} ms, "
              f"p95 {matrix['portfolio_p95']:.1f} ms; matrix / portfolio: p50 "
              f"{matrix['p50'] / matrix['portfolio_p50']:.2f}, p95 {matrix['p95'] / matrix['portfolio_p95']:.2f}")

        sizes = [int(n) for n in args.csv_rows.split(",")]
        for rows in sizes:
            add_bench_findings(cluster, "drift_large", rows)
        print("\n| CSV rows | rows read | peak RSS before | peak RSS after | growth | seconds |\n"
              "|---:|---:|---:|---:|---:|---:|")
        growth = {}
        for rows in sizes:
            out = subprocess.run([sys.executable, __file__, "--csv-child", app_url(cluster, "drift_large"), str(rows)],
                                 cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            growth[rows] = max(0, result["after_kb"] - result["before_kb"]) / 1024
            print(f"| {rows:,} | {result['rows']:,} | {result['before_kb'] / 1024:.0f} MB | "
                  f"{result['after_kb'] / 1024:.0f} MB | {growth[rows]:.1f} MB | {result['seconds']:.1f} |")
        print(f"peak RSS growth, {sizes[-1]:,} vs {sizes[0]:,} rows: {growth[sizes[-1]]:.1f} MB vs "
              f"{growth[sizes[0]]:.1f} MB (goal: flat)")


if __name__ == "__main__":
    main()
