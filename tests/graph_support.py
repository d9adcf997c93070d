"""Fixtures for tests that talk to Microsoft Graph, i.e. to the Graph simulator over real
HTTPS sockets (its own CA, given as GRAPH_CA_BUNDLE).

Import what you use into your test module (pytest then finds the fixtures there):

    from tests.graph_support import graph_simulator, graph_settings, make_tenant_id, make_graph_client  # noqa: F401

- ``graph_simulator``: one simulator for the test session (no demo tenants, no throttle
  limit). Tests share it, so each one adds its own tenants (``make_tenant_id``) and scopes
  injected faults to them (``tenant_id=``); a test that changes global state (the consent
  mode) puts it back.
- ``graph_settings`` / ``graph_certificate_settings``: GraphSettings pointed at it, with the
  app's secret / certificate.
- ``token_provider``: a fresh TokenProvider (secret) per test.
- ``make_graph_client(tenant_id, **kwargs)``: a GraphClient whose ``sleep`` records waits
  instead of sleeping (``client.recorded_sleep.waits``) and whose rate limit is a private,
  generous bucket unless ``rate_limit=`` is given; closed at the end of the test.
- ``FakeClock`` / ``RecordingSleep``: an injectable clock and a sleep that advances it.
- ``backup_payload(family, obj)``: a simulator object (relations inline, as
  ``Simulator.objects`` returns it) in a backup payload's shape, ``{"object", <relations>}``.
- ``payload_hash(family, payload)``: the content hash of a payload (normalize_object +
  content_hash), to compare what a tenant holds with what a backup holds.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from app.graph.client import GraphClient, TokenBucket
from app.graph.credentials import TokenProvider
from app.graph.settings import GraphSettings


def backup_payload(family, obj: dict) -> dict:
    """``{"object": ..., "settings": [...], "assignments": [...]}`` from an object with its
    relations inline (what the backup engine stores, as GraphClient.get_object returns it)."""
    payload = {"object": {key: value for key, value in obj.items() if key not in family.per_object}}
    for relation in family.per_object:
        payload[relation] = list(obj.get(relation) or [])
    return payload


def payload_hash(family, payload: dict) -> str:
    from app.graph.normalize import content_hash, normalize_object

    related = {relation: payload[relation] for relation in family.per_object if relation in payload}
    return content_hash(normalize_object(family, payload["object"], related))


class FakeClock:
    """A clock for ``clock=``/``wall_clock=``: time moves only when told (or when a
    RecordingSleep bound to it "sleeps")."""

    def __init__(self, start: float = 1_000.0):
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """A ``sleep=`` that records each wait and returns at once (advancing ``clock`` if given)."""

    def __init__(self, clock: FakeClock | None = None):
        self.waits: list[float] = []
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)

    @property
    def total(self) -> float:
        return sum(self.waits)


def settings_for(simulator, *, certificate: bool = False, ca_bundle: bool = True) -> GraphSettings:
    """GraphSettings for the simulator (what TENANTATLAS_GRAPH_SIMULATED=1 would configure)."""
    return GraphSettings(
        api_url=simulator.api_url.rstrip("/"),
        login_url=simulator.login_url.rstrip("/"),
        ca_bundle=str(simulator.ca_bundle) if ca_bundle else None,
        client_id=simulator.client_id,
        client_certificate_pem=Path(simulator.client_certificate_path).read_text() if certificate else None,
        client_secret=None if certificate else simulator.client_secret,
        simulated=True,
    )


@pytest.fixture(scope="session")
def graph_simulator(tmp_path_factory):
    from simulator import Simulator

    simulator = Simulator.start(tmp_path_factory.mktemp("graph-simulator"), demo_tenants=False)
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture(scope="session")
def graph_settings(graph_simulator) -> GraphSettings:
    return settings_for(graph_simulator)


@pytest.fixture(scope="session")
def graph_certificate_settings(graph_simulator) -> GraphSettings:
    return settings_for(graph_simulator, certificate=True)


@pytest.fixture
def make_tenant_id(graph_simulator):
    """Add a tenant to the simulator and return its id: make_tenant_id(**add_tenant kwargs)."""

    def make(**kwargs) -> str:
        tenant_id = str(uuid.uuid4())
        kwargs.setdefault("name", f"Test tenant {tenant_id[:8]}")
        graph_simulator.add_tenant(tenant_id, **kwargs)
        return tenant_id

    return make


@pytest.fixture
def token_provider(graph_settings) -> TokenProvider:
    provider = TokenProvider(graph_settings)
    yield provider
    provider.forget_all()


@pytest.fixture
def make_graph_client(graph_settings, token_provider):
    clients: list[GraphClient] = []

    def make(tenant_id: str, **kwargs) -> GraphClient:
        recorded = kwargs.setdefault("sleep", RecordingSleep())
        kwargs.setdefault("rate_limit", TokenBucket(capacity=100_000, rate=100_000))
        kwargs.setdefault("token_provider", token_provider)
        settings = kwargs.pop("settings", graph_settings)
        client = GraphClient(settings, tenant_id, **kwargs)
        client.recorded_sleep = recorded
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
