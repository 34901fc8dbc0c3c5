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
    ({**MINIMAL, "surprise": 1}, "surprise: unknown key (valid keys: deployment, description, hosts"),
    # Messages a person can act on: the closest valid key, the address written wrongly.
    ({**MINIMAL, "application_entitis": []}, "application_entitis: unknown key (did you mean `application_entities`?)"),
    ({**MINIMAL, "scan": {"timeouts": {"conect": 1}}}, "scan.timeouts.conect: unknown key (did you mean `connect`?)"),
    ({**MINIMAL, "hosts": [{"adress": "127.0.0.1"}]}, "hosts.0.adress: unknown key (did you mean `address`?)"),
    ({**MINIMAL, "hosts": [{"address": "127.0.0.300"}]}, "hosts.0.address: '127.0.0.300' is not a valid IP address"),
    ({**MINIMAL, "hosts": [{"address": "pacs_1.example"}]}, "hosts.0.address: 'pacs_1.example' is not an IP address"),
    ({**MINIMAL, "hosts": [{"address": "127.0.0.1/30"}]}, "the range is written 127.0.0.0/30"),
    ({**MINIMAL, "hosts": [{"address": "127.0.0.0/30", "name": "x"}]}, "cannot have one 'name'"),
    ({**MINIMAL, "hosts": [{"address": "127.0.0.1"}, {"address": "127.0.0.1"}]}, "hosts.1: '127.0.0.1' is already hosts.0"),
    ({**MINIMAL, "application_entities": [{"ae_title": "A", "host": "127.0.0.1", "port": 104},
                                          {"ae_title": "A ", "host": "127.0.0.1", "port": 104}]},
     "application_entities.1: duplicate of application_entities.0"),
    ({**MINIMAL, "credentials": {"ca_fle": "/x"}}, "credentials.ca_fle: unknown key (did you mean `ca_file`?)"),
    ({**MINIMAL, "credentials": {"user_identity": {"passcode": "hunter2"}}}, "use {env: NAME} or {file: PATH}"),
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
    with pytest.raises(ConfigError, match=r"environment variable named by its \{env: …\} is not set") as err:
        SecretRef(env="NOT_SET_ANYWHERE_42").resolve()
    # The reference is not repeated: it may be the secret typed into the wrong place.
    assert "NOT_SET_ANYWHERE_42" not in str(err.value)


def test_secret_typed_as_env_name_is_never_echoed() -> None:
    # Given the secret itself where the variable's name belongs (`passcode: {env: <the secret>}`)
    data = {**MINIMAL, "credentials": {"user_identity": {"username": "u", "passcode": {"env": "Tr0ub4dor&3 horse"}}}}
    # When parsed, Then the field is named and the value is not repeated
    with pytest.raises(ConfigError) as err:
        parse_config(data, "c.yaml")
    assert "credentials.user_identity.passcode.env" in str(err.value)
    assert "Tr0ub4dor" not in str(err.value)


def test_yaml_error_says_what_and_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a YAML mistake on line 3
    cfg = tmp_path / "c.yaml"
    cfg.write_text("deployment: t\nhosts:\n  - address: [127.0.0.1\n")
    # When scanned, Then one line gives the line, the column and what is wrong
    assert main(["scan", str(cfg), "-q", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "line 4, column 1" in err and "not valid YAML" in err and "expected ',' or ']'" in err


def test_policy_errors_name_the_field_and_suggest(tmp_path: Path) -> None:
    from dcsaudit.checks import REGISTRY
    from dcsaudit.policy import load_policy

    bad_key = tmp_path / "p1.yaml"
    bad_key.write_text("name: p\nfail_at_severty: high\n")
    with pytest.raises(ConfigError, match=r"fail_at_severty: unknown key \(did you mean `fail_at_severity`\?\)"):
        load_policy(str(bad_key))
    unknown_id = tmp_path / "p2.yaml"
    unknown_id.write_text("name: p\nignore: [inventory.plaintext_dicm]\n")
    policy = load_policy(str(unknown_id))
    with pytest.raises(ConfigError, match=r"ignore: unknown check id 'inventory.plaintext_dicm' "
                                          r"\(did you mean `inventory.plaintext_dicom`\?\)"):
        policy.check_ids(s.id for s in REGISTRY.all())
    bad_yaml = tmp_path / "p3.yaml"
    bad_yaml.write_text("name: p\ngate: [a\n")
    with pytest.raises(ConfigError, match="line 3, column 1: not valid YAML"):
        load_policy(str(bad_yaml))


def test_shipped_policies_name_only_known_checks() -> None:
    from dcsaudit.checks import REGISTRY
    from dcsaudit.policy import load_policy

    for path in Path("configs").glob("policy-*.yaml"):
        load_policy(str(path)).check_ids(s.id for s in REGISTRY.all())


def test_example_configs_are_valid() -> None:
    for path in Path("configs").glob("example-*.yaml"):
        load_config(path)
