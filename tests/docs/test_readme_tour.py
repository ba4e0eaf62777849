"""The README's tour works as written, against a gateway started the way `make run` starts it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent


def tour_commands() -> list[str]:
    """Every `$ ` line of the console blocks in the tour section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```console\n(.*?)```", section, re.DOTALL):
        commands += [line[2:] for line in block.splitlines() if line.startswith("$ ")]
    return commands


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def made_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """`ztgate init --demo` then `ztgate serve`, as `make run` does, on free ports."""
    workdir = tmp_path_factory.mktemp("tour")
    gateway_port, tools_port = _free_port(), _free_port()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    subprocess.run([BIN / "ztgate", "init", "--demo"], cwd=workdir, env=env, check=True)
    config = workdir / "ztgate.toml"
    config.write_text(config.read_text().replace("8471", str(tools_port)))
    env.update(ZTGATE_GATEWAY__PORT=str(gateway_port), ZTGATE_DEMO__PORT=str(tools_port))
    server = subprocess.Popen(
        [BIN / "ztgate", "serve"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{gateway_port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway not ready"
            time.sleep(0.1)
        env["TOUR_GATEWAY_PORT"], env["TOUR_TOOLS_PORT"] = str(gateway_port), str(tools_port)
        yield workdir, env
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)
        if server.stderr is not None:
            server.stderr.close()


def test_the_tour_has_commands() -> None:
    commands = tour_commands()
    assert any(c.startswith("curl") for c in commands)
    assert any(c.startswith("ztgate call") for c in commands)
    assert any(c.startswith("ztgate audit verify") for c in commands)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the tour uses curl")
def test_every_tour_command_succeeds(made_run: tuple[Path, dict[str, str]]) -> None:
    workdir, env = made_run
    outputs = []
    for command in tour_commands():
        if command.startswith(". "):
            continue  # activating the venv: PATH already points at it
        runnable = command.replace(":8470", f":{env['TOUR_GATEWAY_PORT']}").replace(
            ":8471", f":{env['TOUR_TOOLS_PORT']}"
        )
        done = subprocess.run(  # noqa: S602 - the README says to paste these into a shell
            runnable, shell=True, cwd=workdir, env=env, capture_output=True, text=True, timeout=120
        )
        if command.endswith("# refused"):
            # Shown refused on purpose: exit 1 with the reason on one line.
            assert done.returncode == 1, f"{command}\n{done.stdout}\n{done.stderr}"
            assert done.stderr.startswith("ztgate: "), done.stderr
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            outputs.append((command, done.stderr))
            continue
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        outputs.append((command, done.stdout))
    by_command = dict(outputs)
    lisbon = next(
        out
        for cmd, out in outputs
        if cmd.startswith('ztgate call get_weather \'{"city": "Lisbon"}\'')
    )
    assert '"sunny"' in lisbon
    assert "authenticated spiffe://ztgate.local/agent/tour" in lisbon
    assert '"check": "proof"' in lisbon and '"check": "scope"' in lisbon
    mailed = next(out for cmd, out in outputs if "alice@example.com" in cmd)
    assert '"sent": true' in mailed
    mallory = next(out for cmd, out in outputs if "mallory@evil.example" in cmd)
    assert "denied: scope: argument /to names a host outside" in mallory
    anonymous = next(
        out for cmd, out in outputs if cmd.startswith("curl -s localhost:8470/v1/calls")
    )
    assert '"status":401' in anonymous
    smuggled = next(out for cmd, out in outputs if '"shell"' in cmd)
    assert "1 unexpected property" in smuggled
    unknown = next(out for cmd, out in outputs if "delete_all_files" in cmd)
    assert "not in the task's scope" in unknown
    forecast_before, forecast_after = [out for cmd, out in outputs if "call forecast" in cmd]
    assert '"Oslo"' in forecast_before
    # Revoked: the Workload API issues the agent nothing, so it cannot even start.
    assert "no X.509-SVID from the Workload API" in forecast_after
    assert "ok chain main" in by_command["ztgate audit verify"]
    identity = next(out for cmd, out in outputs if "fetch_x509_svid" in cmd)
    assert identity.strip() == "spiffe://ztgate.local/agent/tour"
    assert '{"keys":' in next(out for cmd, out in outputs if "/v1/bundle" in cmd)
    assert "demo finished as expected" in by_command["ztgate demo"]
