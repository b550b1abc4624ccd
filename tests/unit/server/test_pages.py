"""The page's routes in process (the browser tier drives them for real): the cookie's
flags, Secure behind TLS, the policy headers, sign-in and sign-out refusals."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from qforge.auth.roles import Role
from qforge.auth.tokens import TokenStore
from qforge.server.app import create_app
from qforge.server.sessions import COOKIE
from qforge.settings import Settings

# Starlette's TestClient warns, once, on import, that it prefers `httpx2`; httpx is what
# the project locks.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def setup(tmp_path: Path) -> tuple[TestClient, str]:
    token = TokenStore(tmp_path).create("sam", Role.submitter)
    return TestClient(create_app(Settings(jobs_dir=tmp_path))), token


def _cookie_header(response: object) -> str:
    return str(response.headers.get("set-cookie", ""))  # type: ignore[attr-defined]


def test_signing_in_sets_an_httponly_strict_cookie_and_secure_only_over_tls(
        setup: tuple[TestClient, str]) -> None:
    client, token = setup
    plain = client.post("/signin", data={"token": token}, follow_redirects=False)
    assert plain.status_code == 303 and plain.headers["location"] == "/"
    flags = _cookie_header(plain).lower()
    assert "httponly" in flags and "samesite=strict" in flags and "secure" not in flags
    assert token not in _cookie_header(plain)
    proxied = client.post("/signin", data={"token": token}, follow_redirects=False,
                          headers={"X-Forwarded-Proto": "https"})
    assert "secure" in _cookie_header(proxied).lower()
    tls = TestClient(client.app, base_url="https://testserver")
    direct = tls.post("/signin", data={"token": token}, follow_redirects=False)
    assert "secure" in _cookie_header(direct).lower()


def test_a_wrong_token_or_another_site_is_refused_and_the_token_is_not_echoed(
        setup: tuple[TestClient, str]) -> None:
    client, token = setup
    wrong = client.post("/signin", data={"token": "qf_nope"}, follow_redirects=False)
    assert wrong.status_code == 401 and "Unknown or revoked token" in wrong.text
    assert "qf_nope" not in wrong.text and COOKIE not in _cookie_header(wrong)
    cross = client.post("/signin", data={"token": token}, follow_redirects=False,
                        headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and COOKIE not in _cookie_header(cross)


def test_pages_send_a_strict_policy_and_redirect_until_signed_in(
        setup: tuple[TestClient, str]) -> None:
    client, token = setup
    for path in ("/", "/campaigns/x", "/jobs/x"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/signin"
    client.post("/signin", data={"token": token})
    page = client.get("/")
    assert page.status_code == 200 and "Signed in as" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/app.js").status_code == 200


def test_signing_out_needs_the_session_s_csrf_field(setup: tuple[TestClient, str]) -> None:
    client, token = setup
    client.post("/signin", data={"token": token})
    forged = client.post("/signout", data={"csrf": "0" * 64}, follow_redirects=False)
    assert forged.status_code == 403
    assert client.get("/ui/api/campaigns").status_code == 200  # still signed in
