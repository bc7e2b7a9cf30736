"""Server configuration: loopback by default, a key required elsewhere, clear errors; `serve --check`."""

import json

import pytest
from typer.testing import CliRunner

from pipo_agent.cli import app
from pipo_agent.server import EngineUnavailableError, ServerConfig, ServerConfigError, check, is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.7", False), ("example.org", False)],
)  # fmt: skip
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_non_loopback_host_needs_an_api_key() -> None:
    assert ServerConfig().host == "127.0.0.1"
    for host in ("0.0.0.0", "10.0.0.7", "example.org"):
        with pytest.raises(
            ServerConfigError, match=f"--host {host} is reachable from other machines.*API key"
        ):
            ServerConfig.build(host=host)
        with pytest.raises(ServerConfigError, match="API key"):
            ServerConfig.build(host=host, api_key="")
    config = ServerConfig.build(host="0.0.0.0", api_key="s3cret")
    assert "s3cret" not in json.dumps(config.summary()) and config.summary()["api_key"] == "set"


def test_invalid_settings_name_the_field() -> None:
    with pytest.raises(ServerConfigError, match="default_tau"):
        ServerConfig.build(default_tau=3)
    with pytest.raises(ServerConfigError, match=r"task_taus must lie in \[-1, 1\]"):
        ServerConfig.build(task_taus={"strings": 2.0})
    with pytest.raises(ServerConfigError, match="unknown_field"):
        ServerConfig.build(unknown_field=1)
    config = ServerConfig.build(default_tau=0.8, task_taus={"strings": 0.5}, max_num_seqs=3, max_queue=2)
    assert (config.tau_for("strings"), config.tau_for("arithmetic"), config.tau_for(None)) == (0.5, 0.8, 0.8)
    assert config.max_admitted == 5


def test_check_reports_the_sglang_engine_unavailable_without_the_pinned_sglang() -> None:
    assert check(ServerConfig())["model_dir"]
    if _pinned_sglang_installed():
        pytest.skip("the pinned SGLang is installed here: --engine sglang is available")
    with pytest.raises(EngineUnavailableError, match=r"sglang==0\.5\.23"):
        check(ServerConfig.build(engine="sglang"))


def _pinned_sglang_installed() -> bool:
    from importlib import metadata

    try:
        return metadata.version("sglang") == "0.5.23"
    except metadata.PackageNotFoundError:
        return False


def test_serve_check_command() -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["serve", "--check", "--port", "0", "--task-tau", "strings=0.5"])
    assert ok.exit_code == 0, ok.output
    summary = json.loads(ok.output)
    assert summary["host"] == "127.0.0.1" and summary["task_taus"] == {"strings": 0.5}
    refused = runner.invoke(app, ["serve", "--check", "--host", "0.0.0.0"])
    assert refused.exit_code == 2 and "API key is required" in refused.output
    keyed = runner.invoke(
        app, ["serve", "--check", "--host", "0.0.0.0", "--api-key-file", "-"], input="k3y\n"
    )
    assert keyed.exit_code == 0 and "k3y" not in keyed.output
    sglang = runner.invoke(app, ["serve", "--check", "--engine", "sglang"])
    if not _pinned_sglang_installed():
        assert sglang.exit_code == 2 and "sglang==0.5.23" in sglang.output
