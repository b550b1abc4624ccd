"""The page's sessions (qforge.server.sessions): a cookie stands for a live token and
nothing else; changes need the session's CSRF token and the server's origin."""

from __future__ import annotations

from pathlib import Path

import pytest

from qforge.auth.roles import Denied, Role
from qforge.auth.tokens import TokenStore
from qforge.server.sessions import Sessions, load_key, same_origin


@pytest.fixture
def tokens(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path)


def _sessions(tokens: TokenStore, **kw: float) -> Sessions:
    return Sessions(tokens, load_key(tokens.root), **kw)


def test_a_token_signs_in_and_the_cookie_holds_its_name_not_the_token(
        tokens: TokenStore) -> None:
    token = tokens.create("sam", Role.submitter)
    sessions = _sessions(tokens)
    made = sessions.sign_in(token)
    assert made is not None
    session, cookie = made
    assert token not in cookie and cookie.startswith("sam|")
    again = sessions.read(cookie)
    assert again is not None and again.identity.name == "sam"
    assert again.identity.role is Role.submitter and again.csrf == session.csrf


def test_a_wrong_token_does_not_sign_in(tokens: TokenStore) -> None:
    tokens.create("sam", Role.submitter)
    assert _sessions(tokens).sign_in("qf_" + "x" * 43) is None


def test_revoking_the_token_ends_its_sessions_at_the_next_request(
        tokens: TokenStore) -> None:
    token = tokens.create("sam", Role.submitter)
    sessions = _sessions(tokens)
    made = sessions.sign_in(token)
    assert made is not None
    TokenStore(tokens.root).revoke("sam")  # another process: the server sees it at once
    assert sessions.read(made[1]) is None


def test_a_token_replaced_under_the_same_name_does_not_keep_the_old_sessions(
        tokens: TokenStore) -> None:
    sessions = _sessions(tokens)
    made = sessions.sign_in(tokens.create("sam", Role.admin))
    assert made is not None
    tokens.create("sam", Role.admin, replace=True)
    assert sessions.read(made[1]) is None


def test_a_forged_or_altered_cookie_is_no_session(tokens: TokenStore) -> None:
    sessions = _sessions(tokens)
    made = sessions.sign_in(tokens.create("val", Role.viewer))
    tokens.create("ada", Role.admin)
    assert made is not None
    cookie = made[1]
    payload, _ = cookie.rsplit(".", 1)
    assert sessions.read(cookie.replace("val|", "ada|", 1)) is None  # a name swapped in
    assert sessions.read(f"{payload}.{'0' * 64}") is None
    assert sessions.read("") is None and sessions.read("x" * 1000) is None
    other = Sessions(tokens, b"k" * 32)  # another key: another store's server
    assert other.read(cookie) is None


def test_the_key_is_shared_by_every_server_of_the_store(tokens: TokenStore) -> None:
    made = _sessions(tokens).sign_in(tokens.create("sam", Role.submitter))
    assert made is not None
    assert _sessions(tokens).read(made[1]) is not None  # a restart, a second replica
    assert (tokens.root / ".qforge" / "session.key").stat().st_mode & 0o777 == 0o600


def test_signing_out_and_expiry_end_a_session(tokens: TokenStore) -> None:
    token = tokens.create("sam", Role.submitter)
    sessions = _sessions(tokens)
    made = sessions.sign_in(token)
    assert made is not None
    sessions.sign_out(made[0])
    assert sessions.read(made[1]) is None
    assert _sessions(tokens).read(made[1]) is None  # every server of the store
    short = _sessions(tokens, lifetime=-1.0)
    made = short.sign_in(token)
    assert made is not None and short.read(made[1]) is None


def test_a_change_needs_the_csrf_token_and_the_server_s_origin(tokens: TokenStore) -> None:
    sessions = _sessions(tokens)
    made = sessions.sign_in(tokens.create("sam", Role.submitter))
    assert made is not None
    session = made[0]
    sessions.check_write(session, "GET", None, None, "h:1")  # reads need neither
    sessions.check_write(session, "POST", session.csrf, "http://h:1", "h:1")
    sessions.check_write(session, "POST", session.csrf, None, "h:1")  # no Origin sent
    with pytest.raises(Denied, match="CSRF"):
        sessions.check_write(session, "POST", None, "http://h:1", "h:1")
    with pytest.raises(Denied, match="CSRF"):
        sessions.check_write(session, "DELETE", "0" * 64, "http://h:1", "h:1")
    with pytest.raises(Denied, match="another origin"):
        sessions.check_write(session, "POST", session.csrf, "http://evil.example", "h:1")
    assert not same_origin("null", "h:1")
