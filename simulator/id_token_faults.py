"""Bad ID tokens on request: what a relying party must refuse, issued by the real sign-in.

A test (or the control API) queues a fault for a tenant; the next ID token the simulator's
token endpoint issues for that tenant (authorization code grant) is altered in that one way,
and signed as usual unless the fault is about the signature:

    wrong_nonce     the nonce is not the one the authorize request sent
    wrong_issuer    iss is another issuer (the same tenant id under another host)
    wrong_audience  aud is another application
    expired         exp (and iat, nbf) an hour in the past
    other_key       signed by a key the JWKS does not hold, under the JWKS key's kid
    unknown_key     signed by a key the JWKS does not hold, under a kid it does not know
                    (a relying party refetches the JWKS once, for key rotation, then refuses)
    other_tenant    tid, iss and oid of another Entra tenant, signed by the simulator's key

Kept per simulator, outside LoginApp: identity.py only asks `signed()` for each ID token.
"""
from __future__ import annotations

import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any, Callable

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

if TYPE_CHECKING:
    from .core import Simulator

FAULTS = ("wrong_nonce", "wrong_issuer", "wrong_audience", "expired", "other_key", "unknown_key", "other_tenant")
OTHER_TENANT_ID = "0badc0de-0000-4000-8000-00000000e1d0"

_lock = threading.Lock()
_queued: weakref.WeakKeyDictionary[Simulator, dict[str, list[str]]] = weakref.WeakKeyDictionary()
_stray_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def inject(sim: Simulator, tenant_id: str, fault: str, count: int = 1) -> None:
    """The next `count` ID tokens for `tenant_id` carry `fault`."""
    if fault not in FAULTS:
        raise ValueError(f"unknown ID token fault {fault!r}; one of {', '.join(FAULTS)}")
    with _lock:
        _queued.setdefault(sim, {}).setdefault(tenant_id.lower(), []).extend([fault] * count)


def clear(sim: Simulator) -> None:
    with _lock:
        _queued.pop(sim, None)


def _next(sim: Simulator, tenant_id: str) -> str | None:
    with _lock:
        queue = _queued.get(sim, {}).get(tenant_id.lower())
        return queue.pop(0) if queue else None


def signed(sim: Simulator, tenant_id: str, claims: dict[str, Any], sign: Callable[[dict[str, Any]], str]) -> str:
    """The ID token for `claims`: signed by `sign`, unless a fault is queued for the tenant."""
    fault = _next(sim, tenant_id)
    if fault is None:
        return sign(claims)
    claims = dict(claims)
    if fault == "wrong_nonce":
        claims["nonce"] = uuid.uuid4().hex
    elif fault == "wrong_issuer":
        claims["iss"] = f"https://login.evil.invalid/{claims['tid']}/v2.0"
    elif fault == "wrong_audience":
        claims["aud"] = str(uuid.uuid4())
    elif fault == "expired":
        past = int(time.time()) - 3600
        claims.update(iat=past - 3600, nbf=past - 3600, exp=past)
    elif fault == "other_tenant":
        claims["iss"] = claims["iss"].replace(claims["tid"], OTHER_TENANT_ID)
        claims["tid"] = OTHER_TENANT_ID
        claims["oid"] = str(uuid.uuid5(uuid.UUID(OTHER_TENANT_ID), claims["oid"]))
    if fault in ("other_key", "unknown_key"):
        kid = sim._pki.signing_kid if fault == "other_key" else "stray-" + uuid.uuid4().hex[:12]
        return jwt.encode(claims, _stray_key, algorithm="RS256", headers={"typ": "JWT", "kid": kid})
    return sign(claims)
