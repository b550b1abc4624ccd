"""The page's sessions: a token typed into the sign-in form becomes an HMAC-signed cookie.

    cookie qforge_session = <name>|<session id>|<issued, unix s> . <mac>
    mac  = HMAC-SHA256(key, "<name>|<sid>|<issued>|<the token's sha256>")
    csrf = HMAC-SHA256(key, "csrf|<sid>")  (sent back in the X-CSRF-Token header)

The cookie holds the token's name and a random session id, never the token. The MAC
covers the token's stored hash, so a session lives exactly as long as its token: a
revoked token (or one replaced under the same name) fails the check on the next request,
whichever server process revoked it. The key is 32 random bytes in
$JOBS_DIR/.qforge/session.key (mode 0600), shared by every server of the store, so a
restart or a second replica keeps the sessions. Signing out leaves the session id in
$JOBS_DIR/.qforge/sessions-ended/ (one empty file, removed once the session would have
expired), which every server checks: a copied cookie is dead everywhere. Sessions expire
after SESSION_SECONDS.

State-changing requests made with the cookie must carry the session's CSRF token in the
X-CSRF-Token header, and an Origin (when the browser sends one) equal to the server's
own: SameSite=Strict alone does not stop a sibling site or an old browser.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from qforge.auth.roles import Denied, Identity
from qforge.auth.tokens import TokenStore
from qforge.service.problems import Unauthenticated
from qforge.store.layout import INDEX_DIR

COOKIE = "qforge_session"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
KEY_FILE = "session.key"
ENDED_DIR = "sessions-ended"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Session:
    identity: Identity
    sid: str
    csrf: str


def load_key(jobs_dir: Path) -> bytes:
    """The store's session key, created (exclusively, 0600) by the first server."""
    path = jobs_dir / INDEX_DIR / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
    key = path.read_bytes()
    if len(key) < 32:  # a half-written key from a crash: start over
        path.unlink(missing_ok=True)
        return load_key(jobs_dir)
    return key


class Sessions:
    def __init__(self, tokens: TokenStore, key: bytes, *,
                 lifetime: float = SESSION_SECONDS) -> None:
        self.tokens = tokens
        self.key = key
        self.lifetime = lifetime
        self.ended = tokens.root / INDEX_DIR / ENDED_DIR

    def _mac(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def csrf(self, sid: str) -> str:
        return self._mac(f"csrf|{sid}")

    def sign_in(self, token: str) -> tuple[Session, str] | None:
        """A new session and its cookie value for a valid token, else None."""
        identity = self.tokens.authenticate(token)
        if identity is None:
            return None
        record = self.tokens.live_record(identity.name)
        if record is None:
            return None
        sid = secrets.token_urlsafe(16)
        payload = f"{identity.name}|{sid}|{int(time.time())}"
        value = f"{payload}.{self._mac(f'{payload}|{record.sha256}')}"
        return Session(identity, sid, self.csrf(sid)), value

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie stands for, or None (absent, forged, expired, signed
        out, or its token revoked)."""
        if not cookie or len(cookie) > 512:
            return None
        payload, _, mac = cookie.rpartition(".")
        parts = payload.split("|")
        if len(parts) != 3 or not parts[2].isdigit():
            return None
        name, sid, issued = parts[0], parts[1], int(parts[2])
        if time.time() - issued > self.lifetime:
            return None
        record = self.tokens.live_record(name)
        if record is None:
            return None
        if not hmac.compare_digest(mac, self._mac(f"{payload}|{record.sha256}")):
            return None
        if os.path.exists(self.ended / sid):  # signed out (by any server of the store)
            return None
        return Session(record.identity(), sid, self.csrf(sid))

    def sign_out(self, session: Session) -> None:
        self.ended.mkdir(parents=True, exist_ok=True)
        (self.ended / session.sid).touch()
        too_old = time.time() - self.lifetime - 60
        with os.scandir(self.ended) as it:  # those past their expiry need no marker
            for entry in it:
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < too_old:
                        os.unlink(entry.path)

    def check_write(self, session: Session, method: str, csrf: str | None,
                    origin: str | None, host: str | None) -> None:
        """Denied unless a state-changing request carries the session's CSRF token and
        comes from the server's own origin."""
        if method.upper() in SAFE_METHODS:
            return
        if not csrf or not hmac.compare_digest(csrf, session.csrf):
            raise Denied("a change made with the page's session needs its CSRF token "
                         "(the X-CSRF-Token header): refused")
        if origin is not None and not same_origin(origin, host):
            raise Denied(f"a change from another origin ({origin[:100]}) is refused")


def same_origin(origin: str, host: str | None) -> bool:
    """Does an Origin header name this server (its Host header)?"""
    if origin == "null" or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


def identify(sessions: Sessions, cookie: str | None) -> Session:
    session = sessions.read(cookie)
    if session is None:
        raise Unauthenticated("not signed in (or the session ended): sign in at /signin")
    return session
