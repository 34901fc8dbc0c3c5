"""The built-in demo deployment: a small DICOM "product" on loopback, audited by the real pipeline.

``dcsaudit demo`` starts, on 127.0.0.1 and free ports only:
- a pynetdicom SCP ``DEMO-PACS`` (Verification + Storage) on a plain port and on a TLS port
  (certificates generated at start by a throwaway CA; the TLS port asks for an optional client cert),
- a User Identity Negotiation handler (username + passcode; the passcode lives in a temp file),
- an audit-trail originator that sends DICOM audit messages (PS3.15 A.5) to dcsaudit's collector on
  the events the scan causes (associations, rejected identities, C-ECHO),
then audits it with ``run_audit`` exactly like ``dcsaudit scan`` and stops everything.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dcsaudit import certs
from dcsaudit.config import DeploymentConfig, parse_config
from dcsaudit.models.report import Report
from dcsaudit.policy import Policy, load_policy

LOOPBACK = "127.0.0.1"
DEMO_AE = "DEMO-PACS"
DEMO_USER = "demo-user"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


# --- certificates -----------------------------------------------------------------------------------

def make_demo_pki(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate (P-256, SHA-256).

    They live 397 days, so the certificate-expiry check judges the product, not the demo.
    """
    ca = certs.issue("dcsaudit demo CA", days=397, ca=True)
    out: dict[str, Path] = {}
    out["ca"], out["ca_key"] = certs.write_pem(*ca, directory, "ca")
    out["server"], out["server_key"] = certs.write_pem(
        *certs.issue("localhost", hosts=[LOOPBACK], days=397, issuer=ca), directory, "server")
    out["client"], out["client_key"] = certs.write_pem(
        *certs.issue("dcsaudit-demo-client", days=397, issuer=ca), directory, "client")
    return out


# --- the demo product -------------------------------------------------------------------------------

class DemoProduct:
    """pynetdicom SCPs plus an audit-trail originator, all on loopback."""

    def __init__(self, workdir: Path, collector_tls_port: int, pki: dict[str, Path]) -> None:
        self.workdir = workdir
        self.pki = pki
        self.plain_port = free_port()
        self.tls_port = free_port()
        self.collector_tls_port = collector_tls_port
        self.passcode = secrets.token_urlsafe(18)
        self.passcode_file = workdir / "demo-passcode"
        self.passcode_file.write_text(self.passcode, encoding="utf-8")
        self.passcode_file.chmod(0o600)
        self._servers: list[Any] = []
        self._originator: Any = None
        self._originator_lock = threading.Lock()
        self._started_announced = False

    # The audit-trail originator connects lazily: the collector starts with the scan.
    def _audit(self, method: str, *args: Any, **kwargs: Any) -> None:
        try:
            from dcsaudit.audit_originator import AuditOriginator
        except ModuleNotFoundError:
            return
        with self._originator_lock:
            try:
                if self._originator is None:
                    ctx = ssl.create_default_context(cafile=str(self.pki["ca"]))
                    ctx.load_cert_chain(str(self.pki["client"]), str(self.pki["client_key"]))
                    self._originator = AuditOriginator(LOOPBACK, self.collector_tls_port, "tls", ssl_context=ctx,
                                                       app_name="demo-pacs", source_id=DEMO_AE)
                if not self._started_announced:
                    self._started_announced = True
                    self._originator.application_activity(True, [DEMO_AE])
                getattr(self._originator, method)(*args, **kwargs)
            except Exception:  # the demo product keeps serving if its audit trail fails, as real ones do
                self._originator = None

    def _handlers(self) -> list[Any]:
        from pynetdicom import evt

        def on_user_id(event: Any) -> tuple[bool, bytes | None]:
            ok = (event.user_id_type == 2 and event.primary_field == DEMO_USER.encode()
                  and event.secondary_field is not None
                  and secrets.compare_digest(event.secondary_field, self.passcode.encode()))
            peer = f"{event.assoc.requestor.address}:{event.assoc.requestor.port}"
            self._audit("user_authentication", event.primary_field.decode("utf-8", "replace")[:64], ok, peer)
            return ok, None

        def on_echo(event: Any) -> int:
            return 0x0000

        def on_store(event: Any) -> int:
            return 0x0000  # the demo keeps nothing

        def on_find(event: Any) -> Any:
            a = event.assoc
            self._audit("query", "1.2.840.10008.5.1.4.1.2.2.1", f"{a.requestor.address}:{a.requestor.port}",
                        a.requestor.ae_title)
            yield 0x0000, None  # no matches

        def on_accepted(event: Any) -> None:
            a = event.assoc
            self._audit("association", f"{a.requestor.address}:{a.requestor.port}", a.requestor.ae_title,
                        a.acceptor.ae_title, True)

        def on_rejected(event: Any) -> None:
            a = event.assoc
            self._audit("association", f"{a.requestor.address}:{a.requestor.port}", a.requestor.ae_title,
                        a.acceptor.ae_title, False)

        return [(evt.EVT_USER_ID, on_user_id), (evt.EVT_C_ECHO, on_echo), (evt.EVT_C_STORE, on_store),
                (evt.EVT_C_FIND, on_find),
                (evt.EVT_ACCEPTED, on_accepted), (evt.EVT_REJECTED, on_rejected)]

    def start(self) -> None:
        from pynetdicom import AE
        from pynetdicom.sop_class import (  # type: ignore[attr-defined]
            CTImageStorage,
            MRImageStorage,
            SecondaryCaptureImageStorage,
            StudyRootQueryRetrieveInformationModelFind,
            Verification,
        )

        ae = AE(ae_title=DEMO_AE)
        # A small PACS: Verification, three Storage SOP classes and Study Root C-FIND (which answers
        # no matches: the demo holds no patient data).
        for sop in (Verification, CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage,
                    StudyRootQueryRetrieveInformationModelFind):
            ae.add_supported_context(sop)
        ae.maximum_associations = 8
        ae.network_timeout = 5
        ae.acse_timeout = 5
        ae.dimse_timeout = 5
        handlers = self._handlers()
        self._servers.append(ae.start_server((LOOPBACK, self.plain_port), block=False, evt_handlers=handlers))
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(str(self.pki["server"]), str(self.pki["server_key"]))
        tls.load_verify_locations(str(self.pki["ca"]))
        tls.verify_mode = ssl.CERT_OPTIONAL
        self._servers.append(ae.start_server((LOOPBACK, self.tls_port), block=False, evt_handlers=handlers,
                                             ssl_context=tls))

    def stop(self) -> None:
        with self._originator_lock:
            if self._originator is not None:
                try:
                    self._originator.application_activity(False, [DEMO_AE])
                    self._originator.close()
                except Exception:
                    pass
                self._originator = None
        for server in self._servers:
            server.shutdown()
        self._servers.clear()


def demo_config(product: DemoProduct, pki: dict[str, Path], collector_tls_port: int,
                collector_udp_port: int) -> DeploymentConfig:
    """The demo deployment, written as a user would write configs/*.yaml."""
    return parse_config({
        "deployment": "dcsaudit built-in demo (pynetdicom DEMO-PACS on loopback)",
        "hosts": [{"address": LOOPBACK, "name": "demo-pacs",
                   "tcp_ports": [product.plain_port, product.tls_port], "udp_ports": []}],
        "application_entities": [
            {"ae_title": DEMO_AE, "host": LOOPBACK, "port": product.plain_port, "tls": False},
            {"ae_title": DEMO_AE, "host": LOOPBACK, "port": product.tls_port, "tls": True},
        ],
        "credentials": {
            "ca_file": str(pki["ca"]),
            "tls_client": {"cert_file": str(pki["client"]), "key_file": str(pki["client_key"])},
            "user_identity": {"username": DEMO_USER, "passcode": {"file": str(product.passcode_file)}},
        },
        "declared": {
            "N.6-1": {"Maximum number of simultaneous Associations accepted": "8",
                      "Maximum number of simultaneous Associations accepted | Configurable": "SERVICE"},
            "N.8-3": {"BCP 195 RFC 8996 TLS Secure Transport Connection Profile | Receiver": "Y"},
        },
        "scan": {
            "timeouts": {"connect": 2, "read": 2, "tls_handshake": 3, "dicom": 5, "endpoint": 90},
            "intrusive": {"max_associations": True, "max_associations_cap": 12, "measure_timeouts": True},
            # The demo knows its CA: the defective client certificates are signed by it, so each has only
            # its own defect and the validity / key-usage checks are measured, not undetermined.
            "client_certs": {"signing_ca_cert": str(pki["ca"]), "signing_ca_key": str(pki["ca_key"])},
            # The demo SCP's timers are 5 s: cap the measurements at 6 s so the demo stays quick, and
            # retry a transient (2, 3, x) answer for its ARTIM + 2 s. It accepts 8 associations
            # (declared below), so two at a time is safe and lets ARTIM and idle be timed together.
            "dicom": {"timer_cap_seconds": 6, "busy_retry_seconds": 7, "associations_per_host": 2},
        },
        "collector": {"enabled": True, "bind": LOOPBACK, "tls_port": collector_tls_port,
                      "udp_port": collector_udp_port, "cert_file": str(pki["server"]),
                      "key_file": str(pki["server_key"]), "window_seconds": 2},
        "policy": "default",
    }, source="demo")


@contextmanager
def demo_deployment() -> Iterator[DeploymentConfig]:
    """Start the demo product, yield its config, and always stop it."""
    with tempfile.TemporaryDirectory(prefix="dcsaudit-demo-") as tmp:
        workdir = Path(tmp)
        pki = make_demo_pki(workdir)
        collector_tls_port = free_port()
        collector_udp_port = free_port(socket.SOCK_DGRAM)
        product = DemoProduct(workdir, collector_tls_port, pki)
        product.start()
        try:
            yield demo_config(product, pki, collector_tls_port, collector_udp_port)
        finally:
            product.stop()


def run_demo(progress: Callable[[str], None] | None = None, policy_name: str | None = None) -> tuple[Report, Policy]:
    from dcsaudit.runner import run_audit_blocking

    with demo_deployment() as config:
        from dcsaudit import logs

        logs.seed_redaction(config)  # --redact: the demo's hosts and AE titles stay out of -v logs too
        policy = load_policy(policy_name or config.policy)
        if progress:
            progress("demo deployment started on 127.0.0.1")
        report = run_audit_blocking(config, policy, command="demo", progress=progress)
    return report, policy
