"""`qforge token create|list|revoke`: the server's API tokens, managed where the job
store is mounted (docs/tokens.md).

`create` prints a few lines of explanation and then the token alone as the last line
of its output, so that a script can take it with `| tail -n 1`. Exit codes as the other
commands: 2 bad input (a bad name or role, a name taken), 3 no such token.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from qforge.auth.tokens import TokenRecord, TokenStore
    from qforge.settings import Settings

# qforge.auth.Role's values (a test keeps them equal): qforge.auth is imported by the
# command, not by every start of `qforge`.
ROLES = ["viewer", "submitter", "admin"]
EXIT_OK, EXIT_USAGE, EXIT_NO_TOKEN = 0, 2, 3
_P = TypeVar("_P", bound=argparse.ArgumentParser)


def add_parser(sub: argparse._SubParsersAction[_P]) -> None:
    """The `token` command and its three subcommands, on `qforge`'s subparsers."""
    t = sub.add_parser("token", help="the server's API tokens: create, list, revoke",
                       description="Manage the tokens that `qforge server` accepts (run "
                       "where the job store is mounted). See docs/tokens.md.")
    ts = t.add_subparsers(dest="token_command", required=True, parser_class=type(t),
                          metavar="create|list|revoke")
    c = ts.add_parser("create", help="make a token and print it once (its last line)")
    c.add_argument("name", help="who the token is for; becomes the owner of the jobs "
                                "it submits (a-z, 0-9, _ . -)")
    c.add_argument("--role", required=True, choices=ROLES,
                   help="viewer reads; submitter also submits and changes its own jobs; "
                        "admin does everything")
    c.add_argument("--replace", action="store_true",
                   help="rotate: NAME's current token stops working, a new one replaces it")
    ls = ts.add_parser("list", help="the tokens: name, role, created, revoked (no secrets)")
    ls.add_argument("--json", action="store_true")
    r = ts.add_parser("revoke", help="stop a token from working, at once")
    r.add_argument("name")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from qforge.auth.tokens import TokenError, TokenNotFound, TokenStore

    store = TokenStore(settings.jobs_dir)
    try:
        if args.token_command == "create":
            return _create(store, args.name, args.role, replace=args.replace)
        if args.token_command == "list":
            return _list(store.list(), as_json=args.json)
        return _revoke(store, args.name)
    except TokenNotFound as exc:
        return _fail(EXIT_NO_TOKEN, str(exc))
    except TokenError as exc:
        return _fail(EXIT_USAGE, str(exc))


def _create(store: TokenStore, name: str, role: str, *, replace: bool) -> int:
    token = store.create(name, role, replace=replace)
    what = "replaced (the old one no longer works)" if replace else "created"
    print(f"Token {name!r} ({role}) {what} in the job store {store.root}.")
    print("It is shown only this once and kept only as a hash: store it now, as a secret.")
    print("Use it with `qforge login URL`, or QFORGE_TOKEN=<token> and QFORGE_SERVER=URL;")
    print(f"revoke it with `qforge token revoke {name}`. The token:")
    print(token)
    return EXIT_OK


def _list(records: list[TokenRecord], *, as_json: bool) -> int:
    if as_json:
        rows = [{"name": r.name, "role": r.role.value, "created_at": r.created_at,
                 "revoked_at": r.revoked_at} for r in records]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not records:
        print("No tokens yet: `qforge token create NAME --role viewer|submitter|admin`.")
        return EXIT_OK
    width = max(len("NAME"), *(len(r.name) for r in records))
    print(f"{'NAME':<{width}}  {'ROLE':<9}  {'CREATED':<27}  REVOKED")
    for r in records:
        print(f"{r.name:<{width}}  {r.role.value:<9}  {r.created_at:<27}  "
              f"{r.revoked_at or '-'}")
    return EXIT_OK


def _revoke(store: TokenStore, name: str) -> int:
    before = store.get(name)
    record = store.revoke(name)
    if before.revoked_at is not None:
        print(f"Token {name!r} was revoked already, at {record.revoked_at}.")
    else:
        print(f"Token {name!r} ({record.role.value}) revoked: every server using this store "
              "refuses it from its next request.")
    return EXIT_OK


def _fail(code: int, message: str) -> int:
    print(f"qforge: error: {message}", file=sys.stderr)
    return code
