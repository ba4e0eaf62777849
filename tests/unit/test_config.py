"""Settings: safe defaults, one TOML file, ZTGATE_* overrides, errors that say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from ztgate.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    Settings,
    config_path,
    is_loopback,
    load_settings,
)
from ztgate.errors import ConfigError
from ztgate.tools.model import RiskTier


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ztgate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value


# -- defaults and files ----------------------------------------------------------------------


def test_defaults_with_no_file(workdir: Path) -> None:
    settings = load_settings()
    assert settings.gateway.host == "127.0.0.1"
    assert settings.gateway.port == 8470
    assert settings.gateway.max_body_bytes == 1_048_576
    assert settings.gateway.max_json_depth == 32
    assert settings.gateway.check_timeout_seconds == 2.0
    assert settings.store.url == ""
    assert settings.store.synchronous == "normal"
    assert settings.store.busy_timeout_ms == 5000
    assert settings.audit.chain == "main"
    assert settings.demo.tools is False
    assert settings.tools == []
    assert settings.source == "environment"
    assert settings.base_dir == workdir
    assert settings.database_url == f"sqlite:///{workdir / '.ztgate' / 'ztgate.db'}"


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    settings = load_settings(path)
    assert settings.gateway == Settings().gateway
    assert settings.source == str(path)


def test_file_values_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
data_dir = "state"

[gateway]
port = 9001
max_json_depth = 8
log_level = "debug"

[store]
synchronous = "full"
busy_timeout_ms = 250

[audit]
chain = "prod-1"
checkpoint_every_records = 10

[demo]
tools = true
""",
    )
    settings = load_settings(path)
    assert settings.gateway.port == 9001
    assert settings.gateway.max_json_depth == 8
    assert settings.gateway.log_level == "debug"
    assert settings.gateway.host == "127.0.0.1"  # untouched keys keep their defaults
    assert settings.store.synchronous == "full"
    assert settings.store.busy_timeout_ms == 250
    assert settings.audit.chain == "prod-1"
    assert settings.audit.checkpoint_every_records == 10
    assert settings.demo.tools is True
    assert settings.data_dir == Path("state")
    assert settings.source == str(path)


def test_the_busy_timeout_setting_reaches_the_database(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[store]\nbusy_timeout_ms = 321\n"))
    db = settings.open_database()
    try:
        with db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 321
    finally:
        db.dispose()


def test_the_default_file_is_read_from_the_working_directory(workdir: Path) -> None:
    write(workdir, "[gateway]\nport = 9002\n")
    settings = load_settings()
    assert settings.gateway.port == 9002
    assert settings.source == str(DEFAULT_CONFIG)


def test_ztgate_config_names_the_file(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "elsewhere", "[gateway]\nport = 9003\n")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    assert config_path() == path
    assert load_settings().gateway.port == 9003


def test_an_explicit_path_beats_ztgate_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "other.toml"))
    explicit = tmp_path / "explicit.toml"
    assert config_path(explicit) == explicit


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    error = config_error(missing)
    assert error.source == str(missing)
    assert error.reason == "config file not found"


# -- environment -----------------------------------------------------------------------------


def test_environment_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[gateway]\nport = 9001\nhost = "::1"\n')
    monkeypatch.setenv("ZTGATE_GATEWAY__PORT", "9100")
    settings = load_settings(path)
    assert settings.gateway.port == 9100
    assert settings.gateway.host == "::1"  # the rest of the file's section still holds


def test_environment_alone(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZTGATE_STORE__SYNCHRONOUS", "full")
    monkeypatch.setenv("ZTGATE_DATA_DIR", "/srv/ztgate")
    settings = load_settings()
    assert settings.store.synchronous == "full"
    assert settings.data_dir == Path("/srv/ztgate")


def test_environment_error_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[gateway]\nport = 9001\n")
    monkeypatch.setenv("ZTGATE_GATEWAY__PORT", "not-a-port")
    error = config_error(path)
    assert error.source == "environment variable ZTGATE_GATEWAY__PORT"
    assert error.key == "gateway.port"
    assert "ZTGATE_GATEWAY__PORT" in error.diagnostics()


def test_environment_value_out_of_range_names_the_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZTGATE_STORE__BUSY_TIMEOUT_MS", "-1")
    error = config_error()
    assert error.source == "environment variable ZTGATE_STORE__BUSY_TIMEOUT_MS"
    assert error.key == "store.busy_timeout_ms"


# -- errors ----------------------------------------------------------------------------------


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[gateway\nport = 1\n")
    error = config_error(path)
    assert error.source == str(path)
    assert error.key == ""
    assert "not valid TOML" in error.reason
    assert str(path) in error.diagnostics()


def test_a_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ztgate.toml"
    path.write_bytes(b'[gateway]\nhost = "\xff"\n')
    error = config_error(path)
    assert error.source == str(path)


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    directory = tmp_path / "ztgate.toml"
    directory.mkdir()
    error = config_error(directory)
    assert error.source == str(directory)
    assert "cannot read" in error.reason


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[gateway]\nport = 70000\n", "gateway.port"),
        ("[gateway]\nport = -1\n", "gateway.port"),
        ('[gateway]\nport = "http"\n', "gateway.port"),
        ("[gateway]\nmax_json_depth = 1\n", "gateway.max_json_depth"),
        ("[gateway]\nmax_body_bytes = 10\n", "gateway.max_body_bytes"),
        ("[gateway]\ncheck_timeout_seconds = 0\n", "gateway.check_timeout_seconds"),
        ('[gateway]\nlog_level = "trace"\n', "gateway.log_level"),
        ('[store]\nsynchronous = "off"\n', "store.synchronous"),
        ("[store]\nbusy_timeout_ms = 600001\n", "store.busy_timeout_ms"),
        ('[audit]\nchain = "../etc"\n', "audit.chain"),
        ("[audit]\ncheckpoint_every_records = 0\n", "audit.checkpoint_every_records"),
        ("[demo]\nport = 65536\n", "demo.port"),
        ("gateway = 5\n", "gateway"),
        ('[[tools]]\nurl = "http://127.0.0.1:1/"\n', "tools.0.name"),
    ],
)
def test_a_bad_value_names_the_file_and_key(tmp_path: Path, toml: str, key: str) -> None:
    path = write(tmp_path, toml)
    error = config_error(path)
    assert error.source == str(path)
    assert error.key == key
    assert error.reason
    assert error.diagnostics().startswith(f"{path}: {key}: ")


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[gateway]\nprot = 9000\n", "gateway.prot"),
        ("colour = 1\n", "colour"),
        ("[gatway]\nport = 9000\n", "gatway"),
        ('[[tools]]\nname = "a"\nurl = "http://127.0.0.1:1/"\nrisky = "read"\n', "tools.0.risky"),
    ],
)
def test_an_unknown_key_is_an_unknown_setting(tmp_path: Path, toml: str, key: str) -> None:
    error = config_error(write(tmp_path, toml))
    assert error.key == key
    assert error.reason == "unknown setting"


@pytest.mark.parametrize("field", ["source", "base_dir"])
def test_internal_fields_in_the_file_are_unknown_settings(tmp_path: Path, field: str) -> None:
    """Where the settings came from is not a setting: a config error, not a TypeError."""
    path = write(tmp_path, f'{field} = "/elsewhere"\n')
    error = config_error(path)
    assert error.source == str(path)
    assert error.key == field
    assert error.reason == "unknown setting"


def test_the_environment_cannot_move_the_base_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative paths resolve against the config file's directory, whatever ZTGATE_* says."""
    path = write(tmp_path / "conf", 'data_dir = "data"\n')
    monkeypatch.setenv("ZTGATE_BASE_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("ZTGATE_SOURCE", "forged")
    try:
        settings = load_settings(path)
    except ConfigError:
        return  # refusing the variables is fine too
    assert settings.path(settings.data_dir) == tmp_path / "conf" / "data"
    assert settings.source == str(path)


# -- tools -----------------------------------------------------------------------------------

TOOL = """
[[tools]]
name = "{name}"
url = "http://127.0.0.1:8471/{name}"
risk = "{risk}"
"""


def test_declared_tools(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        TOOL.format(name="get_weather", risk="read")
        + 'input_schema = {type = "object", required = ["city"]}\n'
        + TOOL.format(name="send_mail", risk="critical")
        + "timeout_seconds = 3.0\n",
    )
    tools = load_settings(path).declared_tools()
    assert [t.name for t in tools] == ["get_weather", "send_mail"]
    assert tools[0].risk is RiskTier.READ
    assert tools[0].input_schema == {"type": "object", "required": ["city"]}
    assert tools[1].risk is RiskTier.CRITICAL
    assert tools[1].timeout_seconds == 3.0
    assert all(t.source == "config" for t in tools)
    assert tools[1].input_schema == {"type": "object", "additionalProperties": False}


def test_duplicate_tool_names_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        TOOL.format(name="a", risk="read")
        + TOOL.format(name="b", risk="read")
        + TOOL.format(name="a", risk="write"),
    )
    error = config_error(path)
    assert error.source == str(path)
    assert error.key == "tools"
    assert "tool declared more than once: a" in error.reason


@pytest.mark.parametrize(
    ("tool", "problem"),
    [
        (TOOL.format(name="ok", risk="extreme"), "risk must be one of"),
        (TOOL.format(name="\u0435cho", risk="read"), "invalid tool name"),
        ('[[tools]]\nname = "x"\nurl = "ftp://h/"\n', "upstream URL"),
        ('[[tools]]\nname = "x"\nurl = "http://h/"\ninput_schema = {type = "string"}\n', "object"),
    ],
)
def test_an_invalid_declared_tool_names_its_entry(tmp_path: Path, tool: str, problem: str) -> None:
    path = write(tmp_path, TOOL.format(name="first", risk="read") + tool)
    settings = load_settings(path)
    with pytest.raises(ConfigError) as caught:
        settings.declared_tools()
    assert caught.value.source == str(path)
    assert caught.value.key.startswith("tools[1] (")
    assert problem in caught.value.reason


# -- paths -----------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path, workdir: Path) -> None:
    config_dir = tmp_path / "etc" / "ztgate"
    path = write(config_dir, 'data_dir = "data"\n[audit]\nsigning_key = "keys/audit.pem"\n')
    settings = load_settings(path)
    assert settings.base_dir == config_dir
    assert settings.path(settings.data_dir) == config_dir / "data"
    assert settings.path(settings.audit.signing_key) == config_dir / "keys" / "audit.pem"
    assert settings.database_url == f"sqlite:///{config_dir / 'data' / 'ztgate.db'}"


def test_a_relative_config_path_is_resolved(tmp_path: Path, workdir: Path) -> None:
    write(workdir / "conf", "")
    settings = load_settings(Path("conf/ztgate.toml"))
    assert settings.base_dir == workdir / "conf"
    assert settings.base_dir.is_absolute()


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "conf", 'data_dir = "/var/lib/ztgate"\n')
    settings = load_settings(path)
    assert settings.path(settings.data_dir) == Path("/var/lib/ztgate")


def test_an_explicit_store_url_wins(tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\nurl = "postgresql://db.internal/ztgate"\n')
    assert load_settings(path).database_url == "postgresql://db.internal/ztgate"


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))
    with pytest.raises(ValueError, match="frozen"):
        settings.gateway.port = 1  # type: ignore[misc]


# -- loopback --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.10", False),
        ("10.0.0.1", False),
        ("fe80::1", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("127.0.0.1.nip.io", False),
        ("128.0.0.1", False),
        (" 127.0.0.1", False),
        ("[::1]", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# -- federation ------------------------------------------------------------------------------

WEB = 'bundle_endpoint_url = "https://bundles.partner.example/bundle"\n'
SPIFFE = (
    'bundle_endpoint_url = "https://partner.example:8443/"\n'
    'endpoint_profile = "https_spiffe"\n'
    'endpoint_spiffe_id = "spiffe://partner.example/spire/server"\n'
)


def _federation(*entries: str, local: str = "ztgate.local") -> str:
    text = f'[identity]\ntrust_domain = "{local}"\n\n'
    for entry in entries:
        text += f"[[identity.federation]]\n{entry}\n"
    return text


@pytest.mark.parametrize(
    "entry",
    [
        'trust_domain = "partner.example"\nbundle_file = "partner.json"\n',
        'trust_domain = "partner.example"\n' + WEB,
        'trust_domain = "partner.example"\n' + WEB + 'ca_file = "partner-ca.pem"\n',
        'trust_domain = "partner.example"\n' + SPIFFE + 'bundle_file = "bootstrap.json"\n',
    ],
)
def test_a_federation_entry_has_one_source(tmp_path: Path, entry: str) -> None:
    settings = load_settings(write(tmp_path, _federation(entry)))
    [peer] = settings.identity.federation
    assert peer.trust_domain == "partner.example"
    assert (peer.bundle_file is None) != (peer.bundle_endpoint_url is None) or (
        peer.endpoint_profile == "https_spiffe"
    )


def test_an_https_spiffe_endpoint_of_another_known_domain_needs_no_bootstrap(
    tmp_path: Path,
) -> None:
    served = (
        'trust_domain = "prod.partner.example"\n'
        'bundle_endpoint_url = "https://partner.example/prod"\n'
        'endpoint_profile = "https_spiffe"\n'
        'endpoint_spiffe_id = "spiffe://partner.example/bundles"\n'
    )
    home = 'trust_domain = "partner.example"\nbundle_file = "partner.json"\n'
    local = served.replace("spiffe://partner.example/", "spiffe://ztgate.local/")
    assert len(load_settings(write(tmp_path, _federation(served, home))).identity.federation) == 2
    assert load_settings(write(tmp_path, _federation(local))).identity.federation


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        (['trust_domain = "p.example"\n'], "set bundle_file or bundle_endpoint_url"),
        (
            ['trust_domain = "p.example"\nbundle_file = "b.json"\n' + WEB],
            "not both",
        ),
        (['trust_domain = "p.example"\nbundle_endpoint_url = "http://p.example/b"\n'], "https"),
        (['trust_domain = "p.example"\nbundle_endpoint_url = "https:///b"\n'], "https"),
        (['trust_domain = "p.example"\nbundle_endpoint_url = "https://p.example:x/"\n'], "Port"),
        (
            ['trust_domain = "p.example"\nbundle_endpoint_url = "https://u:pw@p.example/b"\n'],
            "user information",
        ),
        (
            ['trust_domain = "p.example"\nbundle_file = "b.json"\nca_file = "ca.pem"\n'],
            "need bundle_endpoint_url",
        ),
        (
            [
                'trust_domain = "p.example"\n'
                + WEB
                + 'endpoint_spiffe_id = "spiffe://p.example/s"\n'
            ],
            "https_spiffe",
        ),
        (
            [
                'trust_domain = "p.example"\n'
                'bundle_endpoint_url = "https://p.example/"\nendpoint_profile = "https_spiffe"\n'
            ],
            "needs endpoint_spiffe_id",
        ),
        (['trust_domain = "partner.example"\n' + SPIFFE], "bootstrap bundle"),
        (
            ['trust_domain = "partner.example"\n' + SPIFFE + 'bundle_file = "b"\nca_file = "c"\n'],
            "ca_file is for",
        ),
        (
            ['trust_domain = "p.example"\n' + SPIFFE.replace('"spiffe://partner', '"spiffe://x')],
            "neither local nor federated",
        ),
        (
            [
                'trust_domain = "p.example"\n'
                + SPIFFE.replace("spire/server", "")
                + 'bundle_file = "b"\n'
            ],
            "should match pattern",
        ),
        (['trust_domain = "ztgate.local"\nbundle_file = "b.json"\n'], "local trust domain"),
        (
            ['trust_domain = "p.example"\nbundle_file = "a"\n'] * 2,
            "more than once",
        ),
        (['trust_domain = "p.example"\nbundle_file = "a"\nendpoint = "x"\n'], "unknown setting"),
    ],
)
def test_a_bad_federation_entry_says_why(tmp_path: Path, entries: list[str], problem: str) -> None:
    error = config_error(write(tmp_path, _federation(*entries)))
    assert error.key.startswith("identity")
    assert problem in error.reason


# -- [limits] ------------------------------------------------------------------------------------


def test_limits_defaults(workdir: Path) -> None:
    limits = load_settings().limits
    assert (limits.agent, limits.task, limits.tool) == (None, None, None)
    assert (limits.loop_max_repeats, limits.loop_window_seconds) == (10, 300.0)
    assert limits.burst_threshold == 50
    assert limits.alert_webhook_url == ""


def test_limits_from_the_file(tmp_path: Path) -> None:
    text = (
        "[limits]\n"
        "agent = { rate_per_second = 2.5 }\n"
        "task = { rate_per_second = 1, burst = 10 }\n"
        "burst_calls_per_second = 20\n"
        "burst_window_seconds = 0.5\n"
        'alert_webhook_url = "https://hooks.example/ztgate"\n'
        "\n[[tools]]\n"
        'name = "pay"\n'
        'url = "http://127.0.0.1:9/pay"\n'
        'limits = { rate_per_second = 0.5, cost_argument = "/amount" }\n'
    )
    settings = load_settings(write(tmp_path, text))
    limits = settings.limits
    assert limits.agent is not None and limits.agent.capacity == 3.0
    assert limits.task is not None and limits.task.capacity == 10.0
    assert limits.burst_threshold == 10
    (tool,) = settings.declared_tools()
    assert tool.limits is not None and tool.limits.cost_argument == "/amount"


def test_bursts_off(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[limits]\nburst_calls_per_second = 0\n"))
    assert settings.limits.burst_threshold == 0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[limits]\nalert_webhook_url = "ftp://x"\n', "limits.alert_webhook_url"),
        ('[limits]\nalert_webhook_url = "http://x:99999/"\n', "limits.alert_webhook_url"),
        ("[limits]\nagent = { rate_per_second = 0 }\n", "limits.agent.rate_per_second"),
        ("[limits]\ntool = { rate_per_second = 1, burst = 0 }\n", "limits.tool.burst"),
        ("[limits]\nloop_max_repeats = -1\n", "limits.loop_max_repeats"),
        ("[limits]\nburst_window_seconds = 0\n", "limits.burst_window_seconds"),
        ("[limits]\nrate = 1\n", "limits.rate"),
    ],
)
def test_bad_limits_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    error = config_error(write(tmp_path, text))
    assert error.key == key


def test_a_tools_bad_limits_name_the_tool(tmp_path: Path) -> None:
    text = '[[tools]]\nname = "pay"\nurl = "http://127.0.0.1:9/"\nlimits = { burst = 2 }\n'
    settings = load_settings(write(tmp_path, text))
    with pytest.raises(ConfigError, match=r"tools\[0\] \(pay\).*rate_per_second"):
        settings.declared_tools()


def test_limits_from_the_environment(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZTGATE_LIMITS__LOOP_MAX_REPEATS", "3")
    monkeypatch.setenv("ZTGATE_LIMITS__AGENT__RATE_PER_SECOND", "7")
    limits = load_settings().limits
    assert limits.loop_max_repeats == 3
    assert limits.agent is not None and limits.agent.rate_per_second == 7


# -- guards ------------------------------------------------------------------------------------


def test_guards_defaults(workdir: Path) -> None:
    guards = load_settings().guards
    assert guards.provenance.enabled and guards.dlp and guards.egress.enabled and guards.pinning
    assert guards.egress.resolve and guards.egress.allowed_domains == ()
    assert guards.justification_not_copied
    assert not guards.judge.enabled
    assert guards.judge.timeout_seconds < load_settings().gateway.check_timeout_seconds


def test_guards_settings_are_read_and_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[guards.egress]\n"
        'allowed_domains = ["Acme.Example.", "*.partner.example"]\n'
        '[guards.egress.agent_domains]\n"spiffe://d/agent/a" = ["a.example"]\n'
        '[guards.judge]\nenabled = true\nurl = "http://127.0.0.1:9000/v1/chat/completions"\n'
        'model = "judge"\n',
    )
    guards = load_settings(path).guards
    assert guards.egress.allowed_domains == ("acme.example", "*.partner.example")
    assert guards.egress.agent_domains == {"spiffe://d/agent/a": ("a.example",)}
    assert guards.judge.enabled and guards.judge.model == "judge"


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[guards.egress]\nallowed_domains = ["bad domain"]\n', "guards.egress.allowed_domains"),
        ('[guards.egress]\nallowed_domains = ["*"]\n', "guards.egress.allowed_domains"),
        ('[guards.judge]\nurl = "ftp://x/"\n', "guards.judge.url"),
        ("[guards.judge]\ntimeout_seconds = 0\n", "guards.judge.timeout_seconds"),
        ("[guards.provenance]\nmax_values_per_task = 1\n", "guards.provenance.max_values_per_task"),
    ],
)
def test_bad_guards_settings_name_the_key(tmp_path: Path, toml: str, key: str) -> None:
    assert config_error(write(tmp_path, toml)).key.startswith(key)


def test_a_declared_tools_flow(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        TOOL.format(name="inbox", risk="read")
        + 'flow = {record_fields = ["/messages/*/from"], egress = false}\n'
        + TOOL.format(name="bad", risk="read")
        + 'flow = {record_fields = ["from"]}\n',
    )
    settings = load_settings(path)
    with pytest.raises(ConfigError) as caught:
        settings.declared_tools()
    assert caught.value.key == "tools[1] (bad)" and "JSON Pointer" in caught.value.reason
    first = settings.tools[0].to_tool()
    assert first.flow is not None and first.flow.record_fields == ("/messages/*/from",)


def test_the_console_is_on_by_default_with_bounded_sessions(tmp_path: Path) -> None:
    from ztgate.config import load_settings

    (tmp_path / "ztgate.toml").write_text(
        "[console]\nenabled = false\nidle_timeout_seconds = 600\n", encoding="utf-8"
    )
    settings = load_settings(tmp_path / "ztgate.toml")
    assert settings.console.enabled is False and settings.console.idle_timeout_seconds == 600
    (tmp_path / "empty.toml").write_text("", encoding="utf-8")
    assert load_settings(tmp_path / "empty.toml").console.enabled is True
    (tmp_path / "bad.toml").write_text("[console]\nidle_timeout_seconds = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="idle_timeout_seconds"):
        load_settings(tmp_path / "bad.toml")


def test_the_egress_proxy_is_off_on_tcp_by_default_and_enclaves_run_as_nobody(
    tmp_path: Path,
) -> None:
    from ztgate.config import load_settings

    (tmp_path / "empty.toml").write_text("", encoding="utf-8")
    settings = load_settings(tmp_path / "empty.toml")
    assert settings.egress_proxy.enabled is False and settings.egress_proxy.host == "127.0.0.1"
    assert (settings.enclaves.uid, settings.enclaves.gid) == (65534, 65534)
    (tmp_path / "bad.toml").write_text("[enclaves]\nuid = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"enclaves\.uid"):
        load_settings(tmp_path / "bad.toml")
