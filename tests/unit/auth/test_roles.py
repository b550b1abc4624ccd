"""Who may do what: the permission matrix of the three roles, as one table."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from qforge.auth import (
    Denied,
    Identity,
    Role,
    can_change,
    can_read,
    can_submit,
    require_change,
    require_submit,
)

ALICE = "alice"
# (role, read, submit, change alice's job, change bob's job, change an "unknown" job)
MATRIX = [
    (Role.viewer, True, False, False, False, False),
    (Role.submitter, True, True, True, False, False),
    (Role.admin, True, True, True, True, True),
]


@pytest.mark.parametrize(("role", "read", "submit", "own", "other", "unknown"), MATRIX)
def test_the_permission_matrix(role: Role, read: bool, submit: bool, own: bool,
                               other: bool, unknown: bool) -> None:
    me = Identity(name=ALICE, role=role)
    assert can_read(me) is read
    assert can_submit(me) is submit
    assert can_change(me, ALICE) is own
    assert can_change(me, "bob") is other
    assert can_change(me, "unknown") is unknown
    # the require_* forms agree with the can_* answers
    for allowed, check in ((submit, lambda: require_submit(me)),
                           (own, lambda: require_change(me, "cancel", "j1", ALICE)),
                           (other, lambda: require_change(me, "delete", "j2", "bob"))):
        if allowed:
            check()
        else:
            with pytest.raises(Denied):
                check()


def test_the_table_covers_every_role() -> None:
    assert {row[0] for row in MATRIX} == set(Role)


def test_a_denial_is_one_line_naming_who_what_and_why() -> None:
    bob = Identity(name="bob", role=Role.submitter)
    with pytest.raises(Denied) as err:
        require_change(bob, "cancel", "water-1a2b", "alice")
    assert str(err.value) == ("token 'bob' (submitter) may not cancel job water-1a2b: "
                              "it belongs to alice")
    viewer = Identity(name="carol", role=Role.viewer)
    with pytest.raises(Denied) as err:
        require_change(viewer, "delete", "water-1a2b", "carol")
    assert str(err.value) == ("token 'carol' (viewer) may not delete job water-1a2b: "
                              "a viewer token only reads")
    with pytest.raises(Denied, match=r"^token 'carol' \(viewer\) may not submit jobs") as err:
        require_submit(viewer)
    assert "\n" not in str(err.value)


def test_an_identity_is_frozen_and_strict() -> None:
    me = Identity(name="alice", role=Role("admin"))
    with pytest.raises(ValidationError):
        me.name = "mallory"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Identity(name="alice", role="root")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Identity(name="", role=Role.viewer)
    with pytest.raises(ValidationError):
        Identity.model_validate({"name": "a", "role": "admin", "extra": 1})
