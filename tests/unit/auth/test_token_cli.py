"""`qforge token create|list|revoke` through the real entry point: the token alone on
the last line, nothing secret in `list`, the exit codes of the other commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qforge.auth import Identity, Role, TokenStore
from qforge.cli.tokens import ROLES


def qforge(jobs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qforge.cli.main", "--jobs-dir", str(jobs),
                           "token", *args], capture_output=True, text=True, timeout=120)


def test_create_prints_the_token_alone_as_its_last_line(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    out = qforge(jobs, "create", "alice", "--role", "submitter")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    token = lines[-1]
    assert token == token.strip() and " " not in token and token.startswith("qf_")
    assert len(lines) > 1  # a short explanation comes first
    assert token not in "\n".join(lines[:-1])
    assert out.stderr == ""
    assert TokenStore(jobs).authenticate(token) == Identity(name="alice",
                                                            role=Role.submitter)


def test_list_shows_names_roles_and_revokes_never_a_hash(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    token = qforge(jobs, "create", "bob", "--role", "viewer").stdout.splitlines()[-1]
    assert qforge(jobs, "create", "alice", "--role", "admin").returncode == 0
    revoked = qforge(jobs, "revoke", "bob")
    assert revoked.returncode == 0
    assert "revoked" in revoked.stdout
    listed = qforge(jobs, "list", "--json")
    assert listed.returncode == 0
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["role"], r["revoked_at"] is None) for r in rows] == [
        ("alice", "admin", True), ("bob", "viewer", False)]
    assert sorted(rows[0]) == ["created_at", "name", "revoked_at", "role"]
    text = qforge(jobs, "list")
    assert text.returncode == 0
    assert text.stdout.splitlines()[0].split() == ["NAME", "ROLE", "CREATED", "REVOKED"]
    sha = {r.name: r.sha256 for r in TokenStore(jobs).list()}
    for output in (listed.stdout, text.stdout):
        assert sha["bob"] not in output and sha["alice"] not in output
        assert token not in output
    assert TokenStore(jobs).authenticate(token) is None


@pytest.mark.parametrize(("args", "code", "message"), [
    (("create", "Alice", "--role", "viewer"), 2, "invalid token name 'Alice'"),
    (("create", "alice", "--role", "root"), 2, "argument --role: invalid choice: 'root'"),
    (("create", "alice"), 2, "the following arguments are required: --role"),
    (("create", "taken", "--role", "viewer"), 2, "token 'taken' exists already"),
    (("revoke", "nobody"), 3, "no token named 'nobody'"),
    (("revoke", "../etc"), 2, "invalid token name '../etc'"),
    ((), 2, "the following arguments are required: create|list|revoke"),
])
def test_exit_codes(tmp_path: Path, args: tuple[str, ...], code: int, message: str) -> None:
    jobs = tmp_path / "jobs"
    TokenStore(jobs).create("taken", Role.viewer)
    before = sorted(p.name for p in (jobs / ".qforge" / "tokens").iterdir())
    out = qforge(jobs, *args)
    assert out.returncode == code
    assert message in out.stderr
    assert len(out.stderr.splitlines()) == 1  # one line, no traceback
    assert out.stdout == ""
    assert sorted(p.name for p in (jobs / ".qforge" / "tokens").iterdir()) == before


def test_replace_rotates_a_token(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    old = qforge(jobs, "create", "ci", "--role", "submitter").stdout.splitlines()[-1]
    out = qforge(jobs, "create", "ci", "--role", "submitter", "--replace")
    assert out.returncode == 0
    new = out.stdout.splitlines()[-1]
    store = TokenStore(jobs)
    assert store.authenticate(old) is None
    assert store.authenticate(new) == Identity(name="ci", role=Role.submitter)


def test_the_role_choices_are_the_roles() -> None:
    assert [r.value for r in Role] == ROLES
