"""API tokens: random secrets, kept only as sha256 hashes in the job store.

    $JOBS_DIR/.qforge/tokens/<name>.json    one TokenRecord per token (mode 0600)
    $JOBS_DIR/.qforge/tokens/generation     a random value rewritten after every change

A token is `qf_` and 32 random bytes (256 bits, URL-safe base64). It is shown once, by
`create`; the store keeps its sha256 only, so a copy of the store gives no token away
(a hash of 256 random bits cannot be turned back, so no salt or slow hash is needed).
A revoked token's record stays, with `revoked_at` set, for `qforge token list`.

`authenticate` is called on every request of the server: it keeps the records in
memory, keyed by hash, and reads the folder again only when the generation file holds a
value it has not seen. Every change writes its record first and a fresh random
generation afterwards, so a reader that saw generation G and then read the folder cannot
miss a later change: that change's generation write comes after its read of G, and is a
new value (a counter could be written twice with one value by two writers; a folder's
mtime can stay equal across two changes within one clock tick, or on NFS). A revoke made
by another process is therefore seen on the next request, at the cost of reading one
small file per request.

Tokens never appear in a log line, an error message or a file.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qforge.auth.roles import Identity, Role
from qforge.store.layout import INDEX_DIR
from qforge_runner.atomic import fsync_dir, write_bytes_atomic
from qforge_runner.errors import validation_line
from qforge_runner.timestamps import utcnow

log = logging.getLogger("qforge.auth")

TOKEN_PREFIX = "qf_"
TOKEN_BYTES = 32  # 256 bits
# A given secret (ensure_token: the chart's first admin token) is as long as this at
# least: 32 characters of URL-safe base64 or hex carry 128 bits or more.
MIN_TOKEN_LENGTH = 32
MAX_TOKEN_LENGTH = 512
NAME_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,62}"
_NAME_RE = re.compile(NAME_PATTERN)
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")  # visible ASCII, no spaces
FOLDER_MODE = 0o700
FILE_MODE = 0o600
GENERATION_FILE = "generation"


class TokenError(Exception):
    """A token request a user can correct (bad name, name taken, bad secret): exit 2."""


class TokenNotFound(TokenError):
    """No token of that name: exit 3."""


class TokensUnreadable(TokenError):
    """The tokens folder cannot be read (another user's 0700 folder, say): no request can
    be authenticated. The server's answer is an error of its own, not "wrong token"."""


class TokenRecord(BaseModel):
    """One token as stored: its name, role and hash, never the token itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=f"^{NAME_PATTERN}$")
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: str
    revoked_at: str | None = None

    @property
    def live(self) -> bool:
        return self.revoked_at is None

    def identity(self) -> Identity:
        return Identity(name=self.name, role=self.role)


def validate_token_name(name: str) -> str:
    """`name` itself, or TokenError saying what a name may be."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise TokenError(f"invalid token name {name!r}: 1 to 63 characters of a-z, 0-9, "
                         "'_', '.', '-', starting with a letter or digit")
    return name


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise TokenError(f"invalid role {text!r}: one of "
                         f"{', '.join(r.value for r in Role)}") from None


def hash_token(token: str) -> str:
    """The sha256 hex digest stored for `token` (any string hashes: a lone surrogate
    from a mangled header is not an error)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    """A fresh token: the prefix (so a leaked one is easy to recognise and scan for)
    and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (the scheme's case does
    not matter, RFC 9110), or None when there is no header or it is not a bearer one."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def read_token_file(path: Path | str) -> str:
    """A token kept in a file (a mounted Kubernetes Secret), without the whitespace
    around it. A missing or unreadable file raises OSError; an empty one TokenError."""
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token:
        raise TokenError(f"{path}: the token file is empty")
    return token


def _check_secret(token: str) -> None:
    if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH \
            or not _TOKEN_RE.fullmatch(token):
        # (the token itself is never part of a message)
        raise TokenError(f"a token must be {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} "
                         f"visible ASCII characters without spaces (this one has "
                         f"{len(token)} characters)")


@dataclass(frozen=True)
class _Snapshot:
    generation: bytes | None
    by_hash: dict[str, TokenRecord]  # live tokens only


class TokenStore:
    """The tokens of one job store. Safe to share between threads; several processes
    (servers, `qforge token`) may use one store at once."""

    def __init__(self, jobs_dir: Path | str) -> None:
        self.root = Path(jobs_dir)
        self.folder = self.root / INDEX_DIR / "tokens"
        self._generation_path = os.fspath(self.folder / GENERATION_FILE)
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None  # None: not read yet

    # ----------------------------------------------------------------- changes
    def create(self, name: str, role: Role | str, *, replace: bool = False) -> str:
        """A new token for `name`, returned once (only its hash is kept). A name that
        holds a live token is refused, unless `replace`: then the old token stops
        working and the new one takes its place (a rotation)."""
        validate_token_name(name)
        role = parse_role(role) if isinstance(role, str) else role
        old = self._read(name)
        if old is not None and old.live and not replace:
            raise TokenError(f"token {name!r} exists already (revoke it first, or "
                             "rotate it with --replace)")
        token = new_token()
        # A new name is published only if no other process took it meanwhile.
        self._put(TokenRecord(name=name, role=role, sha256=hash_token(token),
                              created_at=utcnow()), exclusive=old is None)
        log.info("token %r (%s) %s", name, role.value, "replaced" if old else "created")
        return token

    def revoke(self, name: str) -> TokenRecord:
        """Stop `name`'s token from working, at once for every process using the store.
        Revoking a revoked token changes nothing."""
        validate_token_name(name)
        old = self._read(name)
        if old is None:
            raise TokenNotFound(f"no token named {name!r}")
        if not old.live:
            return old
        record = old.model_copy(update={"revoked_at": utcnow()})
        self._put(record)
        log.info("token %r (%s) revoked", name, record.role.value)
        return record

    def ensure_token(self, name: str, role: Role | str, token: str) -> TokenRecord:
        """Register a given secret under `name` (the chart's first admin token, read
        from a mounted Secret by `qforge server` at start), idempotently: nothing is
        written when `name` holds it already with `role`. A different secret or role
        replaces the record (the Secret was rotated). A revoked record of this very
        secret stays revoked: an admin's revoke is not undone by a restart (a new
        secret in the Secret is needed). A secret another name holds is refused."""
        validate_token_name(name)
        role = parse_role(role) if isinstance(role, str) else role
        _check_secret(token)
        digest = hash_token(token)
        old = self._read(name)
        if old is not None and hmac.compare_digest(old.sha256, digest):
            if not old.live:
                log.warning("token %r was revoked; it is not registered again (put a "
                            "new secret in its place to restore it)", name)
                return old
            if old.role is role:
                return old
        for other in self.list():
            if other.name != name and hmac.compare_digest(other.sha256, digest):
                raise TokenError(f"that secret is already the token of {other.name!r}; "
                                 f"give {name!r} a secret of its own")
        record = TokenRecord(name=name, role=role, sha256=digest, created_at=utcnow())
        self._put(record)
        log.info("token %r (%s) registered from a given secret", name, role.value)
        return record

    # ----------------------------------------------------------------- reading
    def get(self, name: str) -> TokenRecord:
        validate_token_name(name)
        record = self._read(name)
        if record is None:
            raise TokenNotFound(f"no token named {name!r}")
        return record

    def list(self) -> builtins.list[TokenRecord]:
        """Every token's record, by name (revoked ones too); no secret is in them."""
        return sorted(self._read_all(), key=lambda r: r.name)

    def authenticate(self, token: str) -> Identity | None:
        """The identity a presented token stands for, or None (unknown, revoked, or not
        a token at all). Cheap: one small file read and a dictionary lookup. Raises
        TokensUnreadable when the tokens cannot be read at all."""
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
            return None
        digest = hash_token(token)
        record = self._current().by_hash.get(digest)
        # The lookup is keyed by the hash, which tells a caller nothing about any stored
        # token; the final comparison is constant-time all the same.
        if record is None or not hmac.compare_digest(record.sha256, digest):
            return None
        return record.identity()

    def live_record(self, name: str) -> TokenRecord | None:
        """The live token named `name`, or None (none, or revoked): as cheap as
        `authenticate` (the page's sessions ask on every request)."""
        for record in self._current().by_hash.values():
            if record.name == name:
                return record
        return None

    # ----------------------------------------------------------------- internals
    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def _ensure_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)

    def _put(self, record: TokenRecord, *, exclusive: bool = False) -> None:
        """Write one record, then a new generation (in this order: see the module's
        docstring). `exclusive`: fail with TokenError if the record's file exists (it
        is written beside, then hard-linked into place: a link never replaces)."""
        self._ensure_folder()
        data = (record.model_dump_json(indent=2) + "\n").encode()
        path = self._path(record.name)
        if not exclusive:
            write_bytes_atomic(path, data, mode=FILE_MODE)
        else:
            staged = self.folder / f".{record.name}.{secrets.token_hex(8)}.new"
            write_bytes_atomic(staged, data, mode=FILE_MODE)
            try:
                os.link(staged, path)
                fsync_dir(self.folder)
            except FileExistsError:
                raise TokenError(f"token {record.name!r} exists already (it was created "
                                 "just now by someone else)") from None
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(staged)
        write_bytes_atomic(Path(self._generation_path),
                           secrets.token_hex(16).encode() + b"\n", mode=FILE_MODE)

    def _read(self, name: str) -> TokenRecord | None:
        try:
            raw = self._path(name).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return TokenRecord.model_validate_json(raw)
        except ValidationError as exc:
            raise TokenError(f"{self._path(name)}: damaged token record: "
                             f"{validation_line(exc)} (revoke it by hand by deleting "
                             "the file)") from None

    def _read_all(self) -> builtins.list[TokenRecord]:
        records: builtins.list[TokenRecord] = []
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return records
        except OSError as exc:
            raise self._unreadable(exc) from None
        for entry in names:
            if entry.startswith(".") or not entry.endswith(".json"):
                continue
            path = self.folder / entry
            try:
                records.append(TokenRecord.model_validate_json(path.read_bytes()))
            except FileNotFoundError:
                continue
            except (OSError, ValidationError) as exc:
                # A record that cannot be read grants nothing; say so without its content.
                reason = validation_line(exc) if isinstance(exc, ValidationError) \
                    else (exc.strerror or str(exc))
                log.warning("ignoring the token record %s: %s", path, reason)
        return records

    def _read_generation(self) -> bytes | None:
        try:
            with open(self._generation_path, "rb") as f:
                return f.read(256)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: OSError) -> TokensUnreadable:
        return TokensUnreadable(
            f"cannot read the tokens in {self.folder}: {exc.strerror or exc} (they are "
            f"private to the user who created them, uid {_owner_uid(self.folder)}: run "
            "`qforge token` and the server as that user)")

    def _current(self) -> _Snapshot:
        """The live tokens by hash, read again only when the generation changed."""
        generation = self._read_generation()
        snapshot = self._snapshot
        if snapshot is not None and snapshot.generation == generation:
            return snapshot
        with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and snapshot.generation == generation:
                return snapshot  # another thread has just read it
            # The folder is read after the generation: see the module's docstring.
            by_hash = {r.sha256: r for r in self._read_all() if r.live}
            snapshot = _Snapshot(generation=generation, by_hash=by_hash)
            self._snapshot = snapshot
            return snapshot


def _owner_uid(path: Path) -> str:
    try:
        return str(path.stat().st_uid)
    except OSError:
        return "?"
