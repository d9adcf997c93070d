"""`make run` serves with gunicorn (the Procfile's web process): its flags, tried on a real
gunicorn with a stand-in WSGI app."""
from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def make_run_gunicorn_flags() -> list[str]:
    """The gunicorn flags of `make run`'s web process (Procfile), without the bind address and the app."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if "/gunicorn " in line)
    words = shlex.split(line.split("/gunicorn ", 1)[1])
    assert words[-1] == "wsgi:app", line
    words = words[:-1]
    if "--bind" in words:
        at = words.index("--bind")
        del words[at:at + 2]
    return words


def flag_value(flags: list[str], name: str) -> str | None:
    return flags[flags.index(name) + 1] if name in flags else None


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory):
    """gunicorn with `make run`'s flags, serving tests/serving_app.py on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    process = subprocess.Popen(
        [gunicorn, *make_run_gunicorn_flags(), "--bind", f"127.0.0.1:{port}", "tests.serving_app:app"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail("gunicorn exited: " + process.stdout.read())
            time.sleep(0.1)
    yield port, process
    process.terminate()
    process.wait(timeout=10)


def raw_get(port: int, target: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer.decode("latin-1")


def test_a_5000_character_search_reaches_the_app_instead_of_gunicorns_raw_414(gunicorn_server):
    port, _ = gunicorn_server
    answer = raw_get(port, f"/admin/t/00000000-0000-0000-0000-000000000001/policies?q={'x' * 5000}")
    assert answer.startswith("HTTP/1.1 200"), answer[:200]
    assert int(flag_value(make_run_gunicorn_flags(), "--limit-request-line")) <= 8190  # gunicorn's maximum


def test_make_run_serves_from_one_process_so_the_per_process_sign_in_counters_are_exact(gunicorn_server):
    """Sign-in counters live in memory (RATELIMIT_STORAGE_URI unset): with two worker processes an
    attacker got 40 attempts a minute through instead of 20. One process with threads holds them."""
    port, _ = gunicorn_server
    flags = make_run_gunicorn_flags()
    assert flag_value(flags, "--workers") == "1" and int(flag_value(flags, "--threads")) >= 4
    pids = {raw_get(port, f"/?n={n}").split("pid=")[1].split()[0] for n in range(30)}
    assert len(pids) == 1


def test_make_run_does_not_use_gunicorns_shared_default_control_socket():
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    supported = "--no-control-socket" in subprocess.run([gunicorn, "--help"], capture_output=True, text=True).stdout
    assert ("--no-control-socket" in make_run_gunicorn_flags()) == supported
