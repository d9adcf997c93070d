"""Which alert rules an event matches (placeholder until the rules land)."""
from __future__ import annotations


def queue_finding_alerts(tenant, findings, now) -> int:
    return 0
