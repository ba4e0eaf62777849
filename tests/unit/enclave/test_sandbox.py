"""The bubblewrap command line: isolation, binds, the relay, and no values on it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from ztgate.enclave import sandbox
from ztgate.enclave.sandbox import (
    ENV_PREFIX,
    INSIDE_RELAY,
    INSIDE_SOCKET,
    LAUNCH_SCRIPT,
    SandboxOptions,
    bind_args,
    bwrap_args,
    command_path,
    enclave_environment,
    interpreter_paths,
    isolation_args,
    launch_command,
    system_args,
)
from ztgate.enclave.seccomp import filter_program
from ztgate.enclave.spec import EnclaveLimits, EnclaveSpec

SPEC = EnclaveSpec(
    name="files",
    command=sys.executable,
    args=("server.py", "--flag"),
    env={"MODE": "x"},
    secrets={"TOKEN": "s3cr3t"},
    read_only_paths=(Path("/srv/data"),),
    read_write_paths=(Path("/srv/data/out"),),
    cwd=Path("/srv/data"),
    limits=EnclaveLimits(memory_bytes=100, processes=None),
)


def test_isolation_as_root_and_not() -> None:
    as_root = isolation_args(as_root=True)
    assert {"--unshare-net", "--unshare-pid", "--die-with-parent", "--new-session"} <= set(as_root)
    assert "--unshare-user" not in as_root  # a user namespace would map to the host's root
    assert as_root[as_root.index("--cap-drop") + 1] == "ALL"
    user = isolation_args(as_root=False)
    assert "--unshare-user" in user and "--disable-userns" in user and "--cap-add" not in user


def test_the_system_is_read_only() -> None:
    args = system_args()
    assert args[:3] == ["--ro-bind", "/usr", "/usr"]
    assert "--bind" not in args
    assert args[args.index("--tmpfs") - 2 : args.index("--tmpfs") + 2] == [
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
    ]


def test_binds_create_readable_parents_and_keep_modes() -> None:
    args = bind_args([Path("/srv/data"), Path("/usr/lib/x")], [Path("/srv/data/out")])
    text = " ".join(args)
    assert "--perms 0755 --dir /srv " in text
    assert "--ro-bind /srv/data /srv/data" in text and "--bind /srv/data/out /srv/data/out" in text
    assert "/usr/lib/x" not in text  # /usr is bound already
    assert text.index("/srv/data /srv/data") < text.index("/srv/data/out /srv/data/out")


def test_the_interpreter_and_the_command_are_visible() -> None:
    paths = interpreter_paths(sys.executable)
    assert Path(sys.prefix).resolve() in paths
    assert command_path("ztgate-surely-not-a-command") is None


def test_the_whole_command_line() -> None:
    options = SandboxOptions(uid=1234, gid=5678, relay_port=4000)
    args = bwrap_args(SPEC, Path("/run/x/proxy.sock"), options, as_root=True)
    text = " ".join(args)
    assert f"--bind /run/x/proxy.sock {INSIDE_SOCKET}" in text
    assert f"--ro-bind {Path(__file__).parents[3] / 'src/ztgate/enclave/relay.py'}" in text
    assert "--chdir /srv/data" in text
    separator = args.index("--")
    relay = args[separator + 1 :]
    assert relay[:4] == [options.interpreter, "-I", "-S", INSIDE_RELAY]
    assert "--user 1234:5678" in " ".join(relay)
    assert "--rlimit as=100" in " ".join(relay) and "nproc" not in " ".join(relay)
    assert relay[-4:] == ["--", sys.executable, "server.py", "--flag"]
    assert "s3cr3t" not in text and "MODE" not in text


def test_the_launcher_command_carries_the_filter() -> None:
    command, args = launch_command(
        SPEC, Path("/s"), SandboxOptions(), "/usr/bin/bwrap", as_root=False
    )
    assert command == sys.executable
    assert args[:3] == ("-I", "-S", str(LAUNCH_SCRIPT))
    if filter_program() is not None:
        assert args[3] == "--seccomp" and bytes.fromhex(args[4]) == filter_program()
    assert "/usr/bin/bwrap" in args


def test_without_a_filter_for_the_architecture_it_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sandbox, "filter_program", lambda: None)
    with caplog.at_level(logging.WARNING, logger=sandbox.__name__):
        _, args = launch_command(
            SPEC, Path("/s"), SandboxOptions(), "/usr/bin/bwrap", as_root=False
        )
    assert "--seccomp" not in args
    assert "no seccomp filter on this architecture" in caplog.text


def test_without_root_no_user_switch() -> None:
    args = bwrap_args(SPEC, Path("/s"), SandboxOptions(), as_root=False)
    assert "--user" not in args


def test_the_environment_goes_to_the_launcher_prefixed() -> None:
    env = enclave_environment(SPEC)
    assert env[ENV_PREFIX + "TOKEN"] == "s3cr3t" and env[ENV_PREFIX + "MODE"] == "x"
    assert env[ENV_PREFIX + "HOME"] == "/tmp"
    assert all(name.startswith(ENV_PREFIX) for name in env)
