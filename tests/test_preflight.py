"""Preflight (issue 12): every config mistake is found before the first packet.

Each case runs ``dcsaudit scan`` on a config whose only host is a counting listener on 127.0.0.1, with
one mistake added. Then: exit 2, one line on stderr naming the field, and zero connections to the
listener. A control case without the mistake proves the listener does count a scan's connections.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from dcsaudit.cli import main
from dcsaudit.config import ConfigError, parse_config
from dcsaudit.preflight import MAX_ADDRESSES, closest, expand_hosts, read_targets, run_directory
from tests.peers.common import LOOPBACK, TestPKI, tcp_server


class Counter:
    def __init__(self) -> None:
        self.port = 0
        self.connections = 0


@pytest.fixture
def listener() -> Iterator[Counter]:
    """A TCP listener on 127.0.0.1 that counts every connection and closes it at once."""
    counter = Counter()

    def count(conn: socket.socket) -> None:
        counter.connections += 1
        conn.close()

    with tcp_server(count) as port:
        counter.port = port
        yield counter


def base_config(port: int) -> dict[str, Any]:
    return {
        "deployment": "preflight",
        "hosts": [{"address": LOOPBACK, "tcp_ports": [port]}],
        "application_entities": [{"ae_title": "PACS", "host": LOOPBACK, "port": port}],
        "scan": {"use_nmap": False, "udp": False, "tls_audit": False,
                 "timeouts": {"connect": 1, "read": 1, "dicom": 1, "tls_handshake": 1},
                 "dicom": {"user_identity": False, "busy_retry_seconds": 0}},
    }


def encrypted_key(pki: TestPKI, directory: Path, password: bytes) -> Path:
    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), password=None)
    out = directory / "client-encrypted.key"
    out.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(password)))
    return out


# Each mistake: (id, edit the config dict / create files -> extra CLI args, text the message must hold)
Mistake = Callable[[dict[str, Any], Path, TestPKI, pytest.MonkeyPatch], list[str]]


def _host(addr: str) -> Mistake:
    def edit(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
        c["hosts"].append({"address": addr})
        return []
    return edit


def _creds(creds: dict[str, Any]) -> Mistake:
    def edit(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
        c["credentials"] = creds
        return []
    return edit


def _passcode_env_unset(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    mp.delenv("DCSAUDIT_TEST_UNSET_PASSCODE", raising=False)
    c["credentials"] = {"user_identity": {"username": "u", "passcode": {"env": "DCSAUDIT_TEST_UNSET_PASSCODE"}}}
    return []


def _passcode_file_missing(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    c["credentials"] = {"user_identity": {"username": "u", "passcode": {"file": str(tmp / "no-such-secret")}}}
    return []


def _ca_not_pem(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "ca.pem").write_text("this is not a certificate\n")
    c["credentials"] = {"ca_file": str(tmp / "ca.pem")}
    return []


def _wrong_key_password(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    key = encrypted_key(pki, tmp, b"the-right-one")
    mp.setenv("DCSAUDIT_TEST_KEY_PW", "a-wrong-one")
    c["credentials"] = {"tls_client": {"cert_file": str(pki.client_cert), "key_file": str(key),
                                       "key_password": {"env": "DCSAUDIT_TEST_KEY_PW"}}}
    return []


def _encrypted_key_without_password(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    key = encrypted_key(pki, tmp, b"the-right-one")
    c["credentials"] = {"tls_client": {"cert_file": str(pki.client_cert), "key_file": str(key)}}
    return []


def _key_of_another_cert(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    c["credentials"] = {"tls_client": {"cert_file": str(pki.client_cert), "key_file": str(pki.server_key)}}
    return []


def _out_not_writable(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "blocker").write_text("a file, not a directory")
    return ["--out", str(tmp / "blocker" / "sub")]


def _out_holds_previous_report(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "out").mkdir()
    (tmp / "out" / "report.json").write_text('{"run": {"command": "scan"}}')
    return []


def _collector_port_in_use(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    busy = socket.socket()
    busy.bind((LOOPBACK, 0))
    busy.listen(1)
    mp.setattr(Counter, "keep", busy, raising=False)  # closed with the test's monkeypatch undo
    c["collector"] = {"enabled": True, "bind": LOOPBACK, "tls_port": busy.getsockname()[1], "udp_port": None}
    return []


def _collector_udp_port_in_use(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind((LOOPBACK, 0))
    mp.setattr(Counter, "keep", busy, raising=False)
    c["collector"] = {"enabled": True, "bind": LOOPBACK, "tls_port": _free_tcp(), "udp_port": busy.getsockname()[1]}
    return []


def _free_tcp() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _duplicate_ae(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    c["application_entities"].append(dict(c["application_entities"][0]))
    return []


def _unknown_policy_check(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "policy.yaml").write_text("name: site\nignore: [tls.no_legacy_protocol]\n")
    c["policy"] = "policy.yaml"
    return []


def _misspelt_key(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    c["application_entitis"] = c.pop("application_entities")
    return []


def _targets_file_bad_line(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "targets.txt").write_text("# site B\n127.0.0.1\n10.0.0.256  # typo\n")
    return ["--targets", str(tmp / "targets.txt")]


def _targets_file_too_large(c: dict[str, Any], tmp: Path, pki: TestPKI, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "targets.txt").write_text("127.0.0.0/16\n")
    return ["--targets", str(tmp / "targets.txt")]


MISTAKES: list[tuple[str, Mistake, list[str]]] = [
    ("address-out-of-range", _host("127.0.0.300"), ["hosts.1.address", "not a valid IP address"]),
    ("name-not-rfc1123", _host("pacs_b..example"), ["hosts.1.address", "host name (RFC 1123)"]),
    ("unresolvable-name", _host("no-such-host.invalid"), ["hosts.1.address", "does not resolve", "--allow-unresolved"]),
    ("cidr-host-bits", _host("127.0.0.1/30"), ["hosts.1.address", "127.0.0.0/30"]),
    ("cidr-too-large", _host("10.0.0.0/8"), ["hosts.1.address", f"at most {MAX_ADDRESSES}"]),
    ("targets-bad-line", _targets_file_bad_line, ["targets.txt line 3", "10.0.0.256"]),
    ("targets-too-large", _targets_file_too_large, ["--targets", "65534 addresses"]),
    ("secret-env-unset", _passcode_env_unset, ["credentials.user_identity.passcode", "is not set"]),
    ("secret-file-missing", _passcode_file_missing, ["credentials.user_identity.passcode", "cannot read"]),
    ("secret-literal", _creds({"user_identity": {"username": "u", "passcode": "hunter2"}}),
     ["credentials.user_identity.passcode", "use {env: NAME} or {file: PATH}"]),
    ("ca-missing", _creds({"ca_file": "/nonexistent/ca.pem"}), ["credentials.ca_file", "No such file"]),
    ("ca-not-pem", _ca_not_pem, ["credentials.ca_file", "no usable PEM certificate"]),
    ("key-wrong-password", _wrong_key_password, ["credentials.tls_client.key_password", "does not open"]),
    ("key-encrypted-no-password", _encrypted_key_without_password,
     ["credentials.tls_client.key_file", "encrypted", "key_password"]),
    ("key-of-another-cert", _key_of_another_cert, ["credentials.tls_client.key_file", "does not belong"]),
    ("out-not-writable", _out_not_writable, ["--out", "not a writable directory"]),
    ("out-holds-previous-report", _out_holds_previous_report, ["--out", "--force", "--out-dir-per-run"]),
    ("collector-tcp-port-in-use", _collector_port_in_use, ["collector.tls_port", "cannot bind"]),
    ("collector-udp-port-in-use", _collector_udp_port_in_use, ["collector.udp_port", "cannot bind"]),
    ("duplicate-ae", _duplicate_ae, ["application_entities.1", "duplicate of application_entities.0"]),
    ("unknown-policy-check-id", _unknown_policy_check,
     ["ignore", "'tls.no_legacy_protocol'", "did you mean `tls.no_legacy_protocols`?"]),
    ("misspelt-key", _misspelt_key, ["application_entitis", "did you mean `application_entities`?"]),
]


@pytest.mark.parametrize(("mistake", "expected"), [(m, e) for _, m, e in MISTAKES], ids=[i for i, _, _ in MISTAKES])
def test_mistake_exits_2_before_any_packet(mistake: Mistake, expected: list[str], listener: Counter, tmp_path: Path,
                                           pki: TestPKI, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # Given a config for the counting listener with one mistake
    config = base_config(listener.port)
    extra = mistake(config, tmp_path, pki, monkeypatch)
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(config))
    args = ["scan", str(cfg), "-q", *(["--out", str(tmp_path / "out")] if "--out" not in extra else []), *extra]
    # When scanned
    status = main(args)
    # Then exit 2, one line naming the field and the problem, and not one connection to the target
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("dcsaudit: config error: ")
    for text in expected:
        assert text in err, err
    assert listener.connections == 0
    assert not (tmp_path / "out" / "annex.md").exists()


def test_control_the_same_config_without_a_mistake_is_scanned(listener: Counter, tmp_path: Path) -> None:
    # Given the base config (the listener closes every connection: the AE cannot be audited)
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(base_config(listener.port)))
    # When scanned, Then the listener sees the scan, and the dead AE fails the default policy
    assert main(["scan", str(cfg), "-q", "--out", str(tmp_path / "out")]) == 1
    assert listener.connections > 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    ae = [f for f in report["findings"] if f["check_id"] == "dicom.ae_reachable"]
    assert [(f["status"], f["severity"], f["gating"]) for f in ae] == [("fail", "high", True)]
    assert report["run"]["complete"] is True and report["run"]["exit_status"] == 1


def test_secret_typed_into_env_is_never_echoed(listener: Counter, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # Given `passcode: {env: <the secret itself>}` (a valid-looking variable name that is not set)
    secret = "CorrectHorseBatteryStaple42"
    config = base_config(listener.port)
    config["credentials"] = {"user_identity": {"username": "u", "passcode": {"env": secret}}}
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(config))
    # When scanned, Then exit 2 naming the field, without repeating the value, and no packet
    assert main(["scan", str(cfg), "-q", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "credentials.user_identity.passcode" in err and secret not in err
    assert listener.connections == 0


def test_allow_unresolved_makes_a_gating_error_finding(listener: Counter, tmp_path: Path) -> None:
    # Given a second host whose name does not resolve, and --allow-unresolved
    config = base_config(listener.port)
    config["hosts"].append({"address": "no-such-host.invalid", "name": "gone"})
    config["application_entities"].append({"ae_title": "GONE", "host": "gone", "port": 104})
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(config))
    # When scanned
    status = main(["scan", str(cfg), "-q", "--allow-unresolved", "--out", str(tmp_path / "out")])
    # Then the run completes, the unresolved host is a high-severity error that gates (exit 1)
    assert status == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    found = {f["target"]: f for f in report["findings"] if f["check_id"] == "inventory.host_reachable"}
    assert found["no-such-host.invalid"]["status"] == "error" and found["no-such-host.invalid"]["gating"]
    assert "no-such-host.invalid" in report["run"]["unreachable_hosts"]
    assert report["run"]["hosts"] == 2
    assert all(ae["host"] != "no-such-host.invalid" for ae in report["application_entities"])


def test_targets_file_and_cidr_expand_with_a_bound(tmp_path: Path) -> None:
    # Given a config with a /30 and a targets file with comments, an address and a /31
    targets = tmp_path / "t.txt"
    targets.write_text("# ward 3\n127.0.0.9   # modality\n\n127.0.1.0/31\n127.0.0.1\n")
    config = parse_config({"deployment": "t", "hosts": [{"address": "127.0.0.0/30", "tcp_ports": [104]}]})
    # When expanded
    hosts = expand_hosts(config, read_targets(targets)).hosts
    # Then network and broadcast addresses are left out, duplicates kept once, the range's ports kept
    assert [h.address for h in hosts] == ["127.0.0.1", "127.0.0.2", "127.0.0.9", "127.0.1.0", "127.0.1.1"]
    assert hosts[0].tcp_ports == [104] and hosts[2].tcp_ports is None
    with pytest.raises(ConfigError, match="expands to 65534 addresses"):
        expand_hosts(parse_config({"deployment": "t", "hosts": [{"address": "10.1.0.0/16"}]}))


def test_out_dir_per_run_and_force(listener: Counter, tmp_path: Path) -> None:
    # Given a finished scan in out/
    cfg = tmp_path / "site.yaml"
    config = base_config(listener.port)
    config["application_entities"] = []
    cfg.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert main(["scan", str(cfg), "-q", "--out", str(out)]) == 0
    first = (out / "report.json").read_text()
    # When scanned again with --out-dir-per-run, Then a timestamped sub-directory gets the new run
    assert main(["scan", str(cfg), "-q", "--out", str(out), "--out-dir-per-run"]) == 0
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1 and (runs[0] / "report.json").is_file()
    assert (out / "report.json").read_text() == first
    # And with --force the previous report is replaced
    assert main(["scan", str(cfg), "-q", "--out", str(out), "--force"]) == 0
    assert (out / "report.json").read_text() != first


def test_run_directory_never_reuses_one(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 3, 2, 0, 0, tzinfo=UTC)
    first = run_directory(tmp_path, now)
    first.mkdir()
    assert first.name == "20261203T020000Z"
    assert run_directory(tmp_path, now).name == "20261203T020000Z-2"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may bind ports below 1024")
def test_privileged_collector_port_without_privileges(tmp_path: Path, listener: Counter,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = base_config(listener.port)
    config["collector"] = {"enabled": True, "bind": LOOPBACK, "tls_port": _free_tcp(), "udp_port": 514}
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(config))
    assert main(["scan", str(cfg), "-q", "--out", str(tmp_path / "out")]) == 2
    assert "collector.udp_port: cannot bind 127.0.0.1 port 514: permission denied" in capsys.readouterr().err
    assert listener.connections == 0


def test_closest() -> None:
    assert closest("application_entitis", ["hosts", "application_entities"]) == "application_entities"
    assert closest("zzz", ["hosts", "application_entities"]) is None
