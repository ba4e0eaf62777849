"""The DLP rule set: secrets, personal data, encoded blobs; hidden forms; linear time."""

from __future__ import annotations

import base64

import pytest

from ztgate.guards.sensitive import ENCODED, PII, SECRET, entropy, luhn, scan, scan_number

from .linear import assert_linear, seconds

AWS = "AKIAIOSFODNN7EXAMPLE"


def kinds(text: str) -> set[tuple[str, str]]:
    return {(f.kind, f.category) for f in scan(text)}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (f"key {AWS} here", "aws_access_key"),
        ("token ghp_" + "a1B2" * 9, "github_token"),
        ("github_pat_" + "A" * 30, "github_token"),
        ("glpat-" + "x" * 20, "gitlab_token"),
        ("xoxb-1234567890-abcdefghij", "slack_token"),
        ("sk-ant-api03-" + "a" * 40, "anthropic_key"),
        ("sk-proj-" + "Ab3" * 10, "openai_key"),
        ("sk_live_" + "0" * 24, "stripe_key"),
        ("AIza" + "B" * 35, "google_api_key"),
        ("ya29." + "c" * 30, "google_oauth_token"),
        ("SG." + "d" * 22 + "." + "e" * 43, "sendgrid_key"),
        ("SK" + "0123456789abcdef" * 2, "twilio_key"),
        ("npm_" + "f" * 36, "npm_token"),
        ("hf_" + "g" * 34, "huggingface_token"),
        ("0123456789abcdef0123456789abcdef-us12", "mailchimp_key"),
        ("123456789:AA" + "h" * 33, "telegram_bot_token"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", "jwt"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=", "private_key"),
        ("-----BEGIN PRIVATE KEY-----", "private_key"),
        ("postgres://admin:s3cr3t!@db.internal/prod", "password_in_url"),
        ('db_password = "correct horse battery"', "password_assignment"),
        ("API_KEY: abcdef123456", "password_assignment"),
        ("Authorization: Bearer abcdefghijklmnop1234", "bearer_token"),
    ],
)
def test_secrets(text: str, kind: str) -> None:
    assert (kind, SECRET) in kinds(text)


@pytest.mark.parametrize(
    "text",
    [
        "The quarterly numbers are attached; please review before Friday.",
        "password: ********",
        "password = <your password>",
        "api_key = ${API_KEY}",
        "https://user@acme.example/x",
        "postgres://admin:***@db/prod",
        "sk-short",
        "see the SKU list",
    ],
)
def test_no_secrets_in_ordinary_text(text: str) -> None:
    assert not {k for k, c in kinds(text) if c == SECRET}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to carol@partner.example", "email"),
        ("card 4111 1111 1111 1111 exp 12/29", "card_number"),
        ("card 4111-1111-1111-1111", "card_number"),
        ("ssn 123-45-6789", "us_ssn"),
        ("call +44 20 7946 0958", "phone"),
        ("call (555) 123-4567", "phone"),
        ("IBAN DE89 3704 0044 0532 0130 00", "iban"),
    ],
)
def test_personal_data(text: str, kind: str) -> None:
    assert (kind, PII) in kinds(text)


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails Luhn
        "order 12345678",  # a number, not a phone
        "IBAN DE88 3704 0044 0532 0130 00",  # fails mod 97
        "total 1,250,000.00",
    ],
)
def test_no_personal_data_in_numbers_that_are_not(text: str) -> None:
    assert not {k for k, c in kinds(text) if c == PII}


def test_encoded_blobs() -> None:
    blob = base64.b64encode(bytes(range(256)) * 2).decode()
    assert ("base64_blob", ENCODED) in kinds(f"attachment: {blob}")
    assert ("hex_blob", ENCODED) in kinds("a1b2" * 40)
    assert ("high_entropy_string", ENCODED) in kinds("id 9fK2xQ7pL4mZ8rT1vB6nW3cY")
    assert not {c for _, c in kinds("contracts_2024_final_version_two")}


@pytest.mark.parametrize(
    "hidden",
    [
        "AKIA\u200bIOSFODNN7EXAMPLE",  # zero-width space inside
        "\u0410KIAIOSFODNN7EXAMPLE",  # Cyrillic A
        "\uff21\uff2b\uff29\uff21IOSFODNN7EXAMPLE",  # full-width letters
        "AKIA%49OSFODNN7EXAMPLE",  # percent-encoded
        base64.b64encode(f"the key is {AWS}".encode()).decode(),  # base64
        f"the key is {AWS}".encode().hex(),  # hex
        base64.b64encode(base64.b64encode(AWS.encode())).decode(),  # base64 twice
    ],
)
def test_hidden_secrets_are_found(hidden: str) -> None:
    found = [f for f in scan(f"x {hidden} y") if f.kind == "aws_access_key"]
    assert found


def test_hidden_personal_data_is_found() -> None:
    assert ("email", PII) in kinds("carol\u200b@partner.example")
    assert ("email", PII) in kinds("carol%40partner.example")


def test_findings_never_carry_the_text() -> None:
    for finding in scan(f"{AWS} carol@partner.example"):
        assert AWS not in repr(finding) and "carol" not in repr(finding)


def test_an_invalid_ssn_is_not_one() -> None:
    assert ("us_ssn", PII) not in kinds("ssn 000-45-6789")
    assert ("us_ssn", PII) not in kinds("ssn 666-45-6789")


def test_helpers() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert entropy("") == 0.0 and entropy("aaaa") == 0.0 and entropy("ab") == 1.0
    assert scan_number(4111111111111111)[0].kind == "card_number"
    assert scan_number(4111111111111112) == []
    assert scan("short") == []


def test_too_much_to_scan_is_not_vouched_for() -> None:
    assert ("too_many_to_scan", SECRET) in kinds("+1 555 123 4567, " * 20_000)


@pytest.mark.parametrize(
    "unit",
    [
        "a",
        "A" * 15 + " ",
        "x" * 40 + " ",
        "1 ",
        "4111 ",
        "@a.b ",
        "password=",
        "pass:",
        "%41",
        "eyJ.",
        "-----BEGIN ",
        "://a:b@",
    ],
)
def test_scanning_is_linear(unit: str) -> None:
    assert_linear(scan, unit, size=8 * 1024)
    huge = (unit * (1_048_576 // len(unit) + 1))[:1_048_576]
    assert seconds(lambda: scan(huge), repeat=1) < 5.0  # a quadratic scan takes minutes
