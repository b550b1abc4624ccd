"""Who is asking: a bearer token (qforge.auth.tokens), or an authenticating proxy's user
header when the server was told to trust it; and how often they may ask."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from qforge.auth.roles import Identity, Role
from qforge.auth.tokens import TokenStore, bearer_token
from qforge.service.problems import RateLimited, Unauthenticated

PROXY_USER_HEADER = "x-auth-request-user"


@dataclass
class Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """A token bucket per identity: `rate` requests a second on average, bursts of
    `burst`. Pure bookkeeping under one lock (a server process holds one)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    def take(self, who: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            b = self._buckets.get(who)
            if b is None:
                b = self._buckets[who] = Bucket(float(self.burst), now)
            b.tokens = min(float(self.burst), b.tokens + (now - b.stamp) * self.rate)
            b.stamp = now
            if b.tokens < 1.0:
                wait = (1.0 - b.tokens) / self.rate
                raise RateLimited(f"too many requests for {who}: at most {self.rate:g} a "
                                  f"second (bursts of {self.burst}); retry in {wait:.1f} s",
                                  retry_after=wait)
            b.tokens -= 1.0


class Authenticator:
    def __init__(self, tokens: TokenStore, *, trust_proxy_header: bool,
                 proxy_role: Role = Role.submitter) -> None:
        self.tokens = tokens
        self.trust_proxy_header = trust_proxy_header
        self.proxy_role = proxy_role

    def identify(self, authorization: str | None, proxy_user: str | None) -> Identity:
        if self.trust_proxy_header and proxy_user:
            return Identity(name=proxy_user.strip()[:63] or "unknown", role=self.proxy_role)
        if not authorization:
            raise Unauthenticated("no token: send 'Authorization: Bearer <token>' (a token "
                                  "comes from `qforge token create`)")
        token = bearer_token(authorization)
        if token is None:
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        identity = self.tokens.authenticate(token)
        if identity is None:
            raise Unauthenticated("unknown or revoked token")
        return identity
