"""Grants and their proxy credentials: random, per grant, compared in constant time."""

from __future__ import annotations

from ztgate.egress.decision import Attribution, EgressRules
from ztgate.egress.grants import Grant, Grants

GRANT = Grant("files.1", Attribution("files", "spiffe://d/agent/a", "t1"), EgressRules())


def test_credentials_authenticate_their_grant_only() -> None:
    grants = Grants()
    credentials = grants.add(GRANT)
    other = grants.add(Grant("mail.2", Attribution("mail"), EgressRules()))
    assert credentials.user == "files.1" and len(credentials.password) >= 32
    assert grants.authenticate((credentials.user, credentials.password)) is GRANT
    assert grants.authenticate((credentials.user, other.password)) is None
    assert grants.authenticate(("unknown", credentials.password)) is None
    assert grants.authenticate(None) is None
    assert grants.get("files.1") is GRANT


def test_adding_again_changes_the_password_and_removing_ends_it() -> None:
    grants = Grants()
    first = grants.add(GRANT)
    second = grants.add(GRANT)
    assert first.password != second.password
    assert grants.authenticate((first.user, first.password)) is None
    grants.remove("files.1")
    grants.remove("files.1")
    assert grants.authenticate((second.user, second.password)) is None
    assert grants.get("files.1") is None


def test_the_password_is_not_in_the_repr() -> None:
    credentials = Grants().add(GRANT)
    assert credentials.password not in repr(credentials)
