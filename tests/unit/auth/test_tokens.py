"""The token store: random tokens kept only as hashes, in private files; revokes seen at
once by every process; the lookup cached between changes."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from qforge.auth import (
    Identity,
    Role,
    TokenError,
    TokenNotFound,
    TokenRecord,
    TokenStore,
    TokensUnreadable,
)
from qforge.auth import tokens as tokens_module
from qforge.auth.tokens import GENERATION_FILE, TOKEN_PREFIX, bearer_token, read_token_file


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


def _all_bytes(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in root.rglob("*") if p.is_file()]


def test_a_created_token_authenticates_as_its_name_and_role(jobs: Path) -> None:
    store = TokenStore(jobs)
    token = store.create("alice", Role.submitter)
    assert token.startswith(TOKEN_PREFIX)
    assert store.authenticate(token) == Identity(name="alice", role=Role.submitter)
    assert store.authenticate(token + "x") is None
    assert store.authenticate(token[:-1]) is None
    assert store.authenticate("") is None
    assert store.authenticate("qf_" + "A" * 43) is None
    assert store.authenticate("ä" * 10_000) is None
    assert store.authenticate("qf_\udcff" + "A" * 40) is None


def test_tokens_are_256_random_bits_and_all_different(jobs: Path) -> None:
    store = TokenStore(jobs)
    made = [store.create(f"user{i}", Role.viewer) for i in range(20)]
    assert len(set(made)) == 20
    for token in made:
        body = token.removeprefix(TOKEN_PREFIX)
        assert len(body) == 43  # 32 bytes in URL-safe base64, no padding
        assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                "0123456789-_")


def test_only_the_hash_is_stored_never_the_token(jobs: Path) -> None:
    store = TokenStore(jobs)
    tokens = {name: store.create(name, Role.admin) for name in ("alice", "bob")}
    store.revoke("bob")
    store.create("bob", Role.viewer)  # a revoked name may be given a new token
    files = _all_bytes(jobs)
    assert files, "the store holds the token records"
    for token in tokens.values():
        body = token.removeprefix(TOKEN_PREFIX).encode()
        for path, data in files:
            assert body[:16] not in data, path
    record = TokenRecord.model_validate_json((store.folder / "alice.json").read_bytes())
    assert record.sha256 == hashlib.sha256(tokens["alice"].encode()).hexdigest()
    assert record.revoked_at is None


def test_token_files_are_private(jobs: Path) -> None:
    store = TokenStore(jobs)
    store.create("alice", Role.viewer)
    store.revoke("alice")
    store.create("alice", Role.viewer, replace=True)
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700
    names = sorted(p.name for p in store.folder.iterdir())
    assert names == ["alice.json", GENERATION_FILE]  # nothing staged is left behind
    for path in store.folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_the_final_comparison_is_constant_time(jobs: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """hmac.compare_digest decides (a spy records the calls and answers as the real one)."""
    store = TokenStore(jobs)
    token = store.create("alice", Role.viewer)
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens_module.hmac, "compare_digest", spy)
    assert store.authenticate(token) is not None
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert calls == [(digest, digest)]


def test_a_revoked_token_fails_and_stays_listed(jobs: Path) -> None:
    store = TokenStore(jobs)
    token = store.create("alice", Role.admin)
    assert store.authenticate(token) is not None
    revoked = store.revoke("alice")
    assert revoked.revoked_at is not None
    assert store.authenticate(token) is None
    again = store.revoke("alice")  # revoking twice changes nothing
    assert again.revoked_at == revoked.revoked_at
    [listed] = store.list()
    assert (listed.name, listed.role, listed.revoked_at) == ("alice", Role.admin,
                                                              revoked.revoked_at)


def test_a_revoke_by_another_store_object_is_seen_on_the_next_request(jobs: Path) -> None:
    server = TokenStore(jobs)
    admin = TokenStore(jobs)
    token = server.create("alice", Role.submitter)
    assert server.authenticate(token) is not None  # now cached in `server`
    admin.revoke("alice")
    assert server.authenticate(token) is None
    fresh = admin.create("alice", Role.admin)
    assert server.authenticate(fresh) == Identity(name="alice", role=Role.admin)


def test_a_revoke_by_another_process_is_seen_on_the_next_request(jobs: Path) -> None:
    server = TokenStore(jobs)
    token = server.create("alice", Role.submitter)
    assert server.authenticate(token) is not None
    subprocess.run([sys.executable, "-m", "qforge.cli.main", "--jobs-dir", str(jobs),
                    "token", "revoke", "alice"], check=True, capture_output=True,
                   timeout=120)
    assert server.authenticate(token) is None


def test_records_are_read_again_only_when_the_generation_changes(jobs: Path) -> None:
    """Between changes a request reads no token record: a record file removed behind the
    store's back (no generation written) still counts until the next change."""
    server = TokenStore(jobs)
    token = server.create("alice", Role.viewer)
    assert server.authenticate(token) is not None
    (server.folder / "alice.json").unlink()
    assert server.authenticate(token) is not None  # cached: the folder was not read
    TokenStore(jobs).create("bob", Role.viewer)  # any change writes a new generation
    assert server.authenticate(token) is None


def test_a_live_name_is_refused_unless_replaced(jobs: Path) -> None:
    store = TokenStore(jobs)
    old = store.create("alice", Role.viewer)
    with pytest.raises(TokenError, match="token 'alice' exists already"):
        store.create("alice", Role.admin)
    assert store.authenticate(old) == Identity(name="alice", role=Role.viewer)
    new = store.create("alice", Role.admin, replace=True)
    assert store.authenticate(old) is None
    assert store.authenticate(new) == Identity(name="alice", role=Role.admin)


def test_a_name_taken_by_another_writer_meanwhile_is_not_overwritten(jobs: Path) -> None:
    """A new name is published with a hard link, which never replaces a file: of two
    `create`s racing for one name, the second fails instead of killing the first's
    token silently."""
    store = TokenStore(jobs)
    first = store.create("alice", Role.viewer)
    record = TokenRecord(name="alice", role=Role.admin, sha256="0" * 64,
                         created_at="2026-12-07T00:00:00.000000Z")
    with pytest.raises(TokenError, match="created just now by someone else"):
        store._put(record, exclusive=True)
    assert store.authenticate(first) == Identity(name="alice", role=Role.viewer)
    assert sorted(p.name for p in store.folder.iterdir()) == ["alice.json", GENERATION_FILE]


@pytest.mark.parametrize("name", ["", "Alice", "-alice", ".alice", "_a", "a b", "a/b",
                                  "../x", "a" * 64, "é", "alice\n", "a:b"])
def test_bad_names_are_refused_with_one_line_and_nothing_written(jobs: Path,
                                                                 name: str) -> None:
    store = TokenStore(jobs)
    with pytest.raises(TokenError) as err:
        store.create(name, Role.viewer)
    assert str(err.value).startswith(f"invalid token name {name!r}: 1 to 63 characters")
    assert "\n" not in str(err.value)
    assert not jobs.exists()
    with pytest.raises(TokenError):
        store.revoke(name)


@pytest.mark.parametrize("name", ["a", "alice", "ci-bot.2", "x_y", "0", "a" * 63])
def test_good_names(jobs: Path, name: str) -> None:
    store = TokenStore(jobs)
    assert store.authenticate(store.create(name, "submitter")) == Identity(
        name=name, role=Role.submitter)


def test_a_bad_role_and_an_unknown_name(jobs: Path) -> None:
    store = TokenStore(jobs)
    with pytest.raises(TokenError, match="invalid role 'root': one of viewer, submitter, "
                                         "admin"):
        store.create("alice", "root")
    with pytest.raises(TokenNotFound, match="no token named 'bob'"):
        store.revoke("bob")
    with pytest.raises(TokenNotFound):
        store.get("bob")
    assert store.list() == []


def test_ensure_token_registers_a_given_secret_idempotently(jobs: Path) -> None:
    secret = "s3cret-from-a-kubernetes-secret-0123456789"
    store = TokenStore(jobs)
    first = store.ensure_token("admin", Role.admin, secret)
    generation = (store.folder / GENERATION_FILE).read_bytes()
    again = TokenStore(jobs).ensure_token("admin", "admin", secret)
    assert again == first
    assert (store.folder / GENERATION_FILE).read_bytes() == generation  # nothing written
    assert store.authenticate(secret) == Identity(name="admin", role=Role.admin)
    assert secret.encode() not in b"".join(data for _, data in _all_bytes(jobs))
    # a rotated secret replaces the old one
    rotated = secret.replace("0123", "9876")
    store.ensure_token("admin", Role.admin, rotated)
    assert store.authenticate(secret) is None
    assert store.authenticate(rotated) is not None


def test_ensure_token_does_not_undo_a_revoke(jobs: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cret-from-a-kubernetes-secret-0123456789"
    store = TokenStore(jobs)
    store.ensure_token("admin", Role.admin, secret)
    store.revoke("admin")
    with caplog.at_level(logging.WARNING, logger="qforge.auth"):
        record = store.ensure_token("admin", Role.admin, secret)
    assert record.revoked_at is not None
    assert store.authenticate(secret) is None
    assert "token 'admin' was revoked" in caplog.text
    assert secret not in caplog.text


def test_ensure_token_refuses_weak_or_shared_secrets(jobs: Path) -> None:
    store = TokenStore(jobs)
    with pytest.raises(TokenError, match="32 to 512 visible ASCII characters"):
        store.ensure_token("admin", Role.admin, "short")
    with pytest.raises(TokenError, match="32 to 512"):
        store.ensure_token("admin", Role.admin, "a secret with spaces in it, long enough")
    secret = "s3cret-from-a-kubernetes-secret-0123456789"
    store.ensure_token("admin", Role.admin, secret)
    with pytest.raises(TokenError, match="that secret is already the token of 'admin'"):
        store.ensure_token("other", Role.viewer, secret)
    assert [r.name for r in store.list()] == ["admin"]


def test_read_token_file_strips_the_newline(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  qf_abc\n")
    assert read_token_file(path) == "qf_abc"
    path.write_text("\n")
    with pytest.raises(TokenError, match="the token file is empty"):
        read_token_file(path)


def test_a_damaged_record_grants_nothing_and_is_named(jobs: Path,
                                                      caplog: pytest.LogCaptureFixture,
                                                      ) -> None:
    store = TokenStore(jobs)
    token = store.create("alice", Role.admin)
    store.create("bob", Role.viewer)
    (store.folder / "alice.json").write_text('{"name": "alice", "role": "admin"')
    os.utime(store.folder / "alice.json")
    TokenStore(jobs).revoke("bob")  # a change: the server reads the folder again
    with caplog.at_level(logging.WARNING, logger="qforge.auth"):
        assert store.authenticate(token) is None
    assert "ignoring the token record" in caplog.text
    assert [r.name for r in store.list()] == ["bob"]
    with pytest.raises(TokenError, match="damaged token record"):
        store.get("alice")


def test_many_threads_share_one_store(jobs: Path) -> None:
    """The server's threads call authenticate at once: every answer right, before and
    after a revoke made by another store object."""
    server = TokenStore(jobs)
    tokens = [server.create(f"user{i}", Role.submitter) for i in range(8)]

    def check_all(expect_live: bool) -> list[bool]:
        def one(i: int) -> bool:
            token = tokens[i % len(tokens)]
            got = server.authenticate(token)
            return (got == Identity(name=f"user{i % len(tokens)}", role=Role.submitter)) \
                if expect_live else got is None

        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(one, range(400)))

    assert all(check_all(expect_live=True))
    admin = TokenStore(jobs)
    for i in range(len(tokens)):
        admin.revoke(f"user{i}")
    assert all(check_all(expect_live=False))


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer qf_abc", "qf_abc"),
    ("bearer qf_abc", "qf_abc"),
    ("  BEARER   qf_abc  ", "qf_abc"),
    (None, None),
    ("", None),
    ("Bearer", None),
    ("Bearer ", None),
    ("Basic YWxpY2U6cw==", None),
    ("Bearer a b", None),
    ("qf_abc", None),
])
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_tokens_that_cannot_be_read_are_an_error_not_a_wrong_token(jobs: Path) -> None:
    """A folder the process cannot read (here: the generation file is a folder; in real
    life another user's 0700 folder) fails every request with one clear line, not as
    "no such token"."""
    store = TokenStore(jobs)
    token = store.create("alice", Role.viewer)
    generation = store.folder / GENERATION_FILE
    generation.unlink()
    generation.mkdir()
    with pytest.raises(TokensUnreadable, match=r"^cannot read the tokens in .*: "):
        TokenStore(jobs).authenticate(token)
    generation.rmdir()
    assert TokenStore(jobs).authenticate(token) is not None


def test_a_tokens_path_that_is_not_a_folder_is_an_error(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    (jobs / ".qforge").mkdir(parents=True)
    (jobs / ".qforge" / "tokens").write_text("not a folder\n")
    store = TokenStore(jobs)
    with pytest.raises(TokensUnreadable):
        store.list()


def test_no_token_is_ever_logged(jobs: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cret-from-a-kubernetes-secret-0123456789"
    with caplog.at_level(logging.DEBUG):
        store = TokenStore(jobs)
        token = store.create("alice", Role.admin)
        store.authenticate(token)
        store.create("alice", Role.admin, replace=True)
        store.ensure_token("boot", Role.admin, secret)
        store.revoke("boot")
        store.ensure_token("boot", Role.admin, secret)
        with pytest.raises(TokenError):
            store.ensure_token("other", Role.admin, secret)
    assert "token 'alice' (admin) created" in caplog.text  # the store does log, by name
    for sensitive in (token, token.removeprefix(TOKEN_PREFIX)[:12], secret):
        assert sensitive not in caplog.text
