"""RFC 9457 problem details."""

from __future__ import annotations

import orjson
import pytest

from ztgate.http.problems import MEDIA_TYPE, TITLES, Problem


def test_the_document_has_the_rfc_9457_members() -> None:
    problem = Problem(403, "call-denied", "schema: unknown tool 'x'")
    assert problem.body() == {
        "type": "urn:ztgate:problem:call-denied",
        "title": "Call denied",
        "status": 403,
        "detail": "schema: unknown tool 'x'",
    }


def test_the_instance_is_included_only_when_given() -> None:
    problem = Problem(400, "malformed-json", "bad")
    assert "instance" not in problem.body()
    assert "instance" not in problem.body("")
    assert problem.body("0190abcd")["instance"] == "0190abcd"


def test_extensions_are_members_of_the_document() -> None:
    reasons = [{"check": "schema", "outcome": "deny", "reason": "r"}]
    problem = Problem(403, "call-denied", "d", extensions={"call_id": "c1", "reasons": reasons})
    body = problem.body("c1")
    assert body["call_id"] == "c1"
    assert body["reasons"] == reasons
    problem.extensions["outcome"] = "deny"  # the app adds members after construction
    assert problem.body()["outcome"] == "deny"


@pytest.mark.parametrize(("status", "title"), sorted(TITLES.items()))
def test_every_known_status_has_its_title(status: int, title: str) -> None:
    assert Problem(status, "x", "d").body()["title"] == title


def test_an_unknown_status_is_titled_error_and_a_title_can_be_given() -> None:
    assert Problem(418, "teapot", "d").title == "Error"
    assert Problem(403, "x", "d", title="Nope").body()["title"] == "Nope"


def test_it_is_an_exception_carrying_its_detail() -> None:
    with pytest.raises(Problem, match="too big") as caught:
        raise Problem(413, "body-too-large", "too big")
    assert caught.value.status == 413
    assert caught.value.slug == "body-too-large"


def test_the_response_is_problem_json_with_status_and_headers() -> None:
    problem = Problem(405, "http-error", "Method Not Allowed", headers={"Allow": "POST"})
    response = problem.response("call-9")
    assert response.status_code == 405
    assert response.media_type == MEDIA_TYPE == "application/problem+json"
    assert response.headers["content-type"] == MEDIA_TYPE
    assert response.headers["allow"] == "POST"
    assert orjson.loads(response.body) == problem.body("call-9")
    assert int(response.headers["content-length"]) == len(response.body)


def test_non_ascii_details_are_utf8_json() -> None:
    response = Problem(400, "x", "café ☕").response()
    assert orjson.loads(response.body)["detail"] == "café ☕"
    assert "café".encode() in response.body


def test_constructor_mappings_are_copied() -> None:
    extensions = {"call_id": "a"}
    headers = {"Allow": "GET"}
    problem = Problem(405, "x", "d", extensions=extensions, headers=headers)
    extensions["call_id"] = "b"
    headers["Allow"] = "POST"
    assert problem.body()["call_id"] == "a"
    assert problem.response().headers["allow"] == "GET"
