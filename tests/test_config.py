"""Deployment config validation: bad configs fail early with one line naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcsaudit.cli import main
from dcsaudit.config import ConfigError, SecretRef, load_config, parse_config

MINIMAL = {"deployment": "t", "hosts": [{"address": "127.0.0.1"}]}


def test_minimal_config_uses_default_ports() -> None:
    cfg = parse_config(MINIMAL)
    assert 104 in cfg.tcp_ports_for(cfg.hosts[0]) and 2762 in cfg.tcp_ports_for(cfg.hosts[0])


def test_ae_ports_are_added_to_the_inventory() -> None:
    cfg = parse_config({**MINIMAL, "hosts": [{"address": "127.0.0.1", "tcp_ports": [80]}],
                        "application_entities": [{"ae_title": "PACS", "host": "127.0.0.1", "port": 11112}]})
    assert cfg.tcp_ports_for(cfg.hosts[0]) == [80, 11112]


@pytest.mark.parametrize(("data", "expected"), [
    ({"deployment": "t", "hosts": []}, "hosts: List should have at least 1 item"),
    ({**MINIMAL, "scan": {"timeouts": {"connect": 0}}}, "scan.timeouts.connect"),
    ({**MINIMAL, "hosts": [{"address": "127.0.0.1", "tcp_ports": [70000]}]}, "hosts.0.tcp_ports.0"),
    ({**MINIMAL, "application_entities": [{"ae_title": "BAD\\AE", "host": "127.0.0.1", "port": 104}]},
     "application_entities.0.ae_title"),
    ({**MINIMAL, "application_entities": [{"ae_title": "X", "host": "127.9.9.9", "port": 104}]},
     "is not one of the configured hosts"),
    ({**MINIMAL, "credentials": {"user_identity": {"passcode": "hunter2"}}}, "credentials.user_identity.passcode"),
    ({**MINIMAL, "credentials": {"user_identity": {"passcode": {"env": "A", "file": "/b"}}}}, "exactly one"),
    ({**MINIMAL, "surprise": 1}, "surprise: Extra inputs are not permitted"),
])
def test_bad_config_names_field_and_problem(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "cfg.yaml")
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_literal_secret_never_echoed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a config that puts a literal passcode where a reference belongs
    cfg = tmp_path / "c.yaml"
    cfg.write_text("deployment: t\nhosts: [{address: 127.0.0.1}]\n"
                   "credentials: {user_identity: {passcode: s3cr3t-value}}\n")
    # When it is scanned, Then exit 2 with one line that does not repeat the secret
    assert main(["scan", str(cfg), "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "credentials.user_identity.passcode" in err
    assert "s3cr3t-value" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_yaml_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("deployment: [unclosed\n")
    assert main(["scan", str(cfg), "-q"]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_missing_config_exit_2(tmp_path: Path) -> None:
    assert main(["scan", str(tmp_path / "nope.yaml"), "-q"]) == 2


def test_secret_ref_reads_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCSAUDIT_TEST_SECRET", "abc")
    assert SecretRef(env="DCSAUDIT_TEST_SECRET").resolve().get_secret_value() == "abc"
    f = tmp_path / "s"
    f.write_text("xyz\n")
    secret = SecretRef(file=f).resolve()
    assert secret.get_secret_value() == "xyz"
    assert "xyz" not in repr(secret) and "xyz" not in str(secret)


def test_missing_env_secret_is_config_error() -> None:
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE_42 is not set"):
        SecretRef(env="NOT_SET_ANYWHERE_42").resolve()


def test_example_configs_are_valid() -> None:
    for path in Path("configs").glob("example-*.yaml"):
        load_config(path)
