"""Child process that runs sslyze's plugins named in the job (``commands``: ScanCommand values); the TLS audit
uses it for ROBOT only (opt-in): Heartbleed, CCS injection and renegotiation run in-process (vulns.py).

Started by ``vulns.py`` as ``python -P -c <runpy> <this file>``, so it imports only the standard library and
sslyze (not dcsaudit's package and its pydantic models). It imports sslyze first, then reads one job as a
JSON line on stdin and answers one JSON line on stdout. The parent kills it when its bound fires: nothing
here needs to be cancellable (issue 12 F1).

sslyze's connectivity test is skipped: the job carries what the TLS audit already established (highest
version, suites accepted there, client-certificate requirement), from which ``ServerConnectivityInfo`` is
built directly (sslyze.server_connectivity). The test would repeat those facts, and on a server that asks
for a client certificate it blocks in a read until its timeout (issue 16: about 2.2 s on Orthanc).
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sslyze.plugins.plugin_base import ScanJobResult
from sslyze.plugins.scan_commands import ScanCommand, ScanCommandsRepository
from sslyze.server_connectivity import (
    ClientAuthRequirementEnum,
    ServerConnectivityInfo,
    ServerTlsProbingResult,
    TlsVersionEnum,
)
from sslyze.server_setting import ServerNetworkConfiguration, ServerNetworkLocation

_VERSIONS = {"SSLv3": TlsVersionEnum.SSL_3_0, "TLSv1.0": TlsVersionEnum.TLS_1_0, "TLSv1.1": TlsVersionEnum.TLS_1_1,
             "TLSv1.2": TlsVersionEnum.TLS_1_2, "TLSv1.3": TlsVersionEnum.TLS_1_3}
_CLIENT_AUTH = {"required": ClientAuthRequirementEnum.REQUIRED, "optional": ClientAuthRequirementEnum.OPTIONAL,
                "not_requested": ClientAuthRequirementEnum.DISABLED}


def _server_info(job: dict[str, Any]) -> ServerConnectivityInfo:
    name = job["sni"] or job["host"]
    return ServerConnectivityInfo(
        server_location=ServerNetworkLocation(hostname=name, port=job["port"], ip_address=job["host"]),
        network_configuration=ServerNetworkConfiguration(tls_server_name_indication=name,
                                                         network_timeout=job["network_timeout"],
                                                         network_max_retries=1),
        tls_probing_result=ServerTlsProbingResult(
            highest_tls_version_supported=_VERSIONS[job["highest"]],
            cipher_suite_supported=job["ciphers"],
            # Unknown: sslyze then ignores a certificate request, and a plugin that needs one says so.
            client_auth_requirement=_CLIENT_AUTH.get(job["client_auth"], ClientAuthRequirementEnum.OPTIONAL),
            supports_ecdh_key_exchange="ECDH" in job["ciphers"],
        ),
    )


def run(job: dict[str, Any]) -> dict[str, Any]:
    info = _server_info(job)
    commands = [ScanCommand(c) for c in job["commands"]]
    plans = {c: ScanCommandsRepository.get_implementation_cls(c) for c in commands}
    jobs = {c: impl.scan_jobs_for_scan_command(info, None) for c, impl in plans.items()}
    out: dict[str, Any] = {"notes": []}

    def outcomes(fs: list[Any]) -> list[ScanJobResult]:
        done: list[ScanJobResult] = []
        for f in fs:
            try:
                done.append(ScanJobResult(_return_value=f.result(), _exception=None))
            except Exception as exc:  # the plugin's own error: reported, not raised
                done.append(ScanJobResult(_return_value=None, _exception=exc))
        return done

    # Each job uses one connection; at most four at once, like sslyze's own per-server limit (tests that
    # run the three classic plugins through here compare with sslyze's own scan). A command
    # that failed among parallel jobs (a server with one worker thread makes them queue and time out)
    # is run once more before it is reported undetermined.
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {c: [pool.submit(j.function_to_call, *j.function_arguments) for j in js] for c, js in jobs.items()}
        for c, fs in futures.items():
            result = None
            for attempt in range(2):
                try:
                    result = plans[c].result_for_completed_scan_jobs(info, outcomes(fs))
                    break
                except Exception as exc:
                    if attempt == 1:
                        out["notes"].append(f"{c.value}: undetermined ({type(exc).__name__}: {exc})")
                    else:
                        fs = [pool.submit(j.function_to_call, *j.function_arguments) for j in jobs[c]]
            if result is None:
                continue
            if c == ScanCommand.HEARTBLEED:
                out["heartbleed"] = result.is_vulnerable_to_heartbleed
            elif c == ScanCommand.OPENSSL_CCS_INJECTION:
                out["ccs_injection"] = result.is_vulnerable_to_ccs_injection
            elif c == ScanCommand.SESSION_RENEGOTIATION:
                out["client_renegotiation"] = result.is_vulnerable_to_client_renegotiation_dos
                out["secure_renegotiation"] = result.supports_secure_renegotiation
            elif c == ScanCommand.ROBOT:
                out["robot"] = result.robot_result.name
    return out


def main() -> None:
    line = sys.stdin.readline()
    if not line:
        os._exit(0)  # a pre-started worker that was not needed
    try:
        answer = run(json.loads(line))
    except Exception as exc:
        answer = {"notes": [f"sslyze failed: {type(exc).__name__}: {exc}"]}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    os._exit(0)  # do not wait for plugin threads that are still reading


if __name__ == "__main__":
    main()
