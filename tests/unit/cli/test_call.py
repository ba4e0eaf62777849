"""`ztgate call`: argument handling, the gateway's URL, and refusals as one line and exit 1.

The call itself runs in the README tour and the demo, against a live gateway
and Workload API.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from ztgate.cli.call import _arguments, gateway_url
from ztgate.errors import InvalidInputError
from ztgate.testing import make_settings

Cli = Callable[..., Result]


@pytest.mark.parametrize(
    ("toml", "url"),
    [
        ("", "http://127.0.0.1:8470"),
        ('[gateway]\nhost = "0.0.0.0"\nport = 9000\n', "http://127.0.0.1:9000"),
        ('[gateway]\nhost = "::1"\ntls = true\n', "https://[::1]:8470"),
        ('[gateway]\nhost = "gw.internal"\n', "http://gw.internal:8470"),
    ],
)
def test_the_gateway_url_comes_from_the_config(tmp_path: Path, toml: str, url: str) -> None:
    assert gateway_url(make_settings(tmp_path, toml, init=False)) == url


def test_arguments_are_a_json_object() -> None:
    assert _arguments('{"city": "Lisbon"}') == {"city": "Lisbon"}
    for bad in ("[1]", "nope", '"text"'):
        with pytest.raises(InvalidInputError):
            _arguments(bad)


def test_a_task_is_required(ztgate: Cli) -> None:
    result = ztgate("call", "get_weather", "{}")
    assert isinstance(result.exception, InvalidInputError)
    assert "--task is required" in result.exception.message


def test_no_identity_is_one_line_and_exit_1(
    ztgate: Cli, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    result = ztgate(
        "call", "get_weather", "{}", "--task", "t", "--socket", str(tmp_path / "no.sock"),
        "--url", "http://127.0.0.1:9",
    )  # fmt: skip
    assert result.exit_code == 1
    err = capfd.readouterr().err + result.output
    lines = [line for line in err.splitlines() if line.startswith("ztgate: ")]
    assert len(lines) == 1 and "IdentityError" in lines[0], err
