"""Known-vulnerability tests through sslyze's own plugins: Heartbleed, CCS injection, ROBOT, renegotiation.

These need real (partial) OpenSSL handshakes and sslyze already implements them carefully, so the
probe reuses its Python API with only these scan commands. Blocking: run it with
``Limiter.run_blocking``. ROBOT sends many RSA key exchanges (seconds per endpoint) and is opt-in.
"""

from __future__ import annotations

from typing import Any

from dcsaudit.models.tls import Vulnerabilities


def run_sslyze(host: str, port: int, robot: bool, timeout: float) -> tuple[Vulnerabilities, bool | None]:
    """Returns (vulnerabilities, client-initiated renegotiation accepted). Never raises."""
    try:
        # From the defining modules: the sslyze package re-exports these without ``__all__``.
        from sslyze.plugins.scan_commands import ScanCommand
        from sslyze.scanner.models import ServerScanRequest, ServerScanStatusEnum
        from sslyze.scanner.scan_command_attempt import ScanCommandAttemptStatusEnum
        from sslyze.scanner.scanner import Scanner
        from sslyze.server_setting import ServerNetworkConfiguration, ServerNetworkLocation
    except ImportError as exc:
        return Vulnerabilities(notes=[f"sslyze not available: {exc}"]), None
    commands = {ScanCommand.HEARTBLEED, ScanCommand.OPENSSL_CCS_INJECTION, ScanCommand.SESSION_RENEGOTIATION}
    if robot:
        commands.add(ScanCommand.ROBOT)
    notes: list[str] = [] if robot else ["ROBOT not tested (opt-in: TlsAuditOptions.robot)"]
    try:
        req = ServerScanRequest(
            server_location=ServerNetworkLocation(hostname=host, port=port, ip_address=host),
            scan_commands=commands,
            network_configuration=ServerNetworkConfiguration(tls_server_name_indication=host,
                                                             network_timeout=max(1, min(2, int(timeout)))),
        )
        scanner = Scanner(per_server_concurrent_connections_limit=4, concurrent_server_scans_limit=1)
        scanner.queue_scans([req])
        result = next(iter(scanner.get_results()))
    except Exception as exc:
        return Vulnerabilities(notes=[f"sslyze failed: {type(exc).__name__}: {exc}"]), None
    if result.scan_status != ServerScanStatusEnum.COMPLETED or result.scan_result is None:
        err = getattr(result.connectivity_error_trace, "exc_value", None) or result.connectivity_status
        return Vulnerabilities(notes=[f"sslyze could not connect: {err}"]), None
    sr = result.scan_result

    def get(attempt: Any, attr: str) -> Any:
        if attempt.status != ScanCommandAttemptStatusEnum.COMPLETED:
            notes.append(f"{attr}: {attempt.error_reason}")
            return None
        return getattr(attempt.result, attr)

    hb = get(sr.heartbleed, "is_vulnerable_to_heartbleed")
    ccs = get(sr.openssl_ccs_injection, "is_vulnerable_to_ccs_injection")
    rob = None
    if robot:
        r = get(sr.robot, "robot_result")
        rob = r.name if r is not None else None
    reneg = get(sr.session_renegotiation, "is_vulnerable_to_client_renegotiation_dos")
    return Vulnerabilities(heartbleed=hb, ccs_injection=ccs, robot=rob, notes=notes), reneg
