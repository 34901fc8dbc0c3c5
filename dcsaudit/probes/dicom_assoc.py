"""DICOM association audit of each Application Entity as acceptor (issue 4; standards digest §2–3).

Per AE, in this order (one association each unless said otherwise):

1. ``baseline`` — configured Called/Calling AE titles, Verification plus the configured SOP classes as
   presentation contexts, C-ECHO, release: verification, implementation identity (PS3.7 D.3.3.2),
   Maximum Length, accepted contexts. With valid user-identity credentials configured and the baseline
   rejected, a second baseline carries them (the product may require an identity).
2. ``any_called_ae`` — 16 random characters as Called AE; ``any_calling_ae`` — random Calling AE.
   The reject triples are kept (PS3.8 §9.3.4: (1, 1, 7) called / (1, 1, 3) calling not recognised).
3. Vendor-default titles (``scan.dicom.default_called_aes`` / ``default_calling_aes``), only where the
   random title was refused (otherwise every title is accepted anyway).
4. User Identity Negotiation types 1–5 with invalid, then valid credentials (``user_identity``).
5. Intrusive, opt-in: ARTIM / request / idle timers (3 concurrent connections, bounded by the timer
   cap) and the maximum number of simultaneous associations (up to the configured cap).

Typically 8 associations for an acceptor that takes any title, up to ~20 with title checks, identity
types and valid credentials; against a local pynetdicom or DCMTK SCP the non-intrusive part takes
well under a second. Only C-ECHO is ever sent as a DIMSE operation: no patient data moves.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import string
import time
from collections.abc import Callable

from dcsaudit.config import ApplicationEntityConfig, ConfigError
from dcsaudit.context import AuditContext
from dcsaudit.models.core import Reason
from dcsaudit.models.dicom import ApplicationEntity, AssociationAttempt, PresentationContextResult
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.probes import dicom_params, dicom_ul, user_identity
from dcsaudit.probes.dicom_client import Spec, Target, run_attempt
from dcsaudit.probes.dicom_impl import recognise
from dcsaudit.probes.dicom_sop import SopClass, resolve, service_of

UNKNOWN_AE = "ANY-SCP"
# Outcomes that mean "no DICOM conversation is possible here": stop auditing this AE after the baseline.
FATAL = {"closed", "refused", "timeout", "tls_failure", "protocol_error", "error"}


def random_ae() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(16))


def build_ssl_context(ctx: AuditContext) -> ssl.SSLContext:
    """Client TLS context from the credentials: client certificate if given; verify only with a CA.

    Certificate validity is the TLS audit's business; here TLS is only the transport.
    """
    creds = ctx.config.credentials
    sc = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    sc.check_hostname = False
    if creds.ca_file is not None:
        sc.load_verify_locations(cafile=str(creds.ca_file))
        sc.verify_mode = ssl.CERT_REQUIRED
    else:
        sc.verify_mode = ssl.CERT_NONE
    if creds.tls_client is not None:
        tc = creds.tls_client
        pw = tc.key_password.resolve().get_secret_value() if tc.key_password else None
        sc.load_cert_chain(str(tc.cert_file), str(tc.key_file), password=pw)
    return sc


def _timeouts(ctx: AuditContext) -> dicom_ul.Timeouts:
    t = ctx.config.scan.timeouts
    return dicom_ul.Timeouts(connect=t.connect, tls=t.tls_handshake, acse=t.dicom, dimse=t.dicom)


def _title_verdict(baseline: AssociationAttempt, probe: AssociationAttempt, reason_code: int) -> bool | None:
    """Did the acceptor take an unknown title? None when the answer does not tell."""
    if probe.outcome == "accepted":
        return True
    if probe.outcome == "rejected" and probe.reject is not None:
        if probe.reject.source == 1 and probe.reject.reason == reason_code:
            return False
        if baseline.outcome == "accepted":
            return False  # only the title differed from an accepted request
    if probe.outcome == "aborted" and baseline.outcome == "accepted":
        return False  # "rejected (non-standard)": A-ABORT instead of an RJ (digest §3 step 4)
    if probe.outcome == "closed" and baseline.outcome == "accepted":
        return False
    return None


class _HostGate:
    """Keeps a host's intrusive measurements apart from every other probe of that host.

    Products share one association limit across their AEs and ports: holding associations open (max
    associations) or idle (timers) while another AE of the same host is being audited would starve it
    and record a false (2, 3, 2) "local-limit-exceeded" reject. So each AE's intrusive step waits until
    every AE of the host has finished its ordinary probes, and then runs alone.
    """

    def __init__(self, aes: int) -> None:
        self.pending = aes
        self.ordinary_done = asyncio.Event()
        self.intrusive = asyncio.Lock()
        if aes <= 0:
            self.ordinary_done.set()

    def arrive(self) -> None:
        self.pending -= 1
        if self.pending <= 0:
            self.ordinary_done.set()


async def _audit_ae(ctx: AuditContext, ae_title: str, host: str, port: int, tls: bool, configured: bool,
                    gate: _HostGate | None = None) -> ApplicationEntity:
    gate = gate or _HostGate(1)
    arrived = False

    def arrive() -> None:
        nonlocal arrived
        if not arrived:
            arrived = True
            gate.arrive()

    try:
        return await _audit_ae_phases(ctx, ae_title, host, port, tls, configured, gate, arrive)
    finally:
        arrive()


async def _audit_ae_phases(ctx: AuditContext, ae_title: str, host: str, port: int, tls: bool, configured: bool,
                           gate: _HostGate, arrive: Callable[[], None]) -> ApplicationEntity:
    start = time.perf_counter()
    cfg = ctx.config.scan
    calling = cfg.calling_ae_title
    label = f"{host}:{port}/{'dicom-tls' if tls else 'dicom'}"
    base = {"ae_title": ae_title, "host": host, "port": port, "tls": tls, "configured": configured,
            "calling_ae_title": calling}
    sops, unknown = resolve(list(cfg.dicom.sop_classes))
    extra_ev: list[str] = []
    if unknown:
        extra_ev.append(ctx.evidence.add("dicom.assoc", label, ok=False, reason=Reason.SKIPPED,
                                         summary=f"unknown SOP class names ignored: {', '.join(unknown)}").id)
    try:
        ssl_ctx = build_ssl_context(ctx) if tls else None
    except (OSError, ssl.SSLError, ConfigError) as exc:
        ev = ctx.evidence.add("dicom.assoc", label, ok=False, reason=Reason.TLS_FAILURE,
                              summary=f"cannot build the TLS client context: {type(exc).__name__}")
        return ApplicationEntity(**base, error="TLS client context unusable", evidence=[*extra_ev, ev.id])
    target = Target(ctx, host, port, ssl_ctx, _timeouts(ctx))
    verification = (sops[0],)

    def spec(purpose: str, called: str = ae_title, calling_ae: str = calling,
             sop: tuple[SopClass, ...] = verification, uid: dicom_ul.UserIdentityRQ | None = None) -> Spec:
        # Only the baselines send a C-ECHO; the other probes only need the association answer.
        return Spec(purpose, called, calling_ae, sop, uid, echo=purpose.startswith("baseline"))

    ctx.progress(f"DICOM {label} AE {ae_title}")
    baseline, _ = await run_attempt(target, spec("baseline", sop=tuple(sops)))
    if baseline.outcome in FATAL:
        return ApplicationEntity(**base, error=f"baseline association: {baseline.outcome}"
                                 + (f" ({baseline.error})" if baseline.error else ""),
                                 attempts=target.attempts, associations_used=len(target.attempts),
                                 evidence=[*extra_ev, *(a.evidence for a in target.attempts if a.evidence)],
                                 duration_ms=round((time.perf_counter() - start) * 1000, 3))

    passcode_ok = tls or ctx.config.scan.intrusive.passcode_over_plaintext
    valid, uid_notes = user_identity.valid_identities(ctx.config.credentials.user_identity, passcode_allowed=passcode_ok)
    reference = baseline  # the accepted request the title probes are compared with
    auth: dicom_ul.UserIdentityRQ | None = None
    if baseline.outcome != "accepted" and valid:
        best = sorted(valid, key=lambda v: {2: 0, 5: 1, 4: 2, 3: 3, 1: 4}[v.identity_type])[0]
        with_id, _ = await run_attempt(target, spec("baseline_with_identity", sop=tuple(sops), uid=best.rq))
        if with_id.outcome == "accepted":
            reference, auth = with_id, best.rq

    # 2. AE title policy.
    any_called, _ = await run_attempt(target, spec("any_called_ae", called=random_ae(), uid=auth))
    any_calling, _ = await run_attempt(target, spec("any_calling_ae", calling_ae=random_ae(), uid=auth))
    accepts_called = _title_verdict(reference, any_called, 7)
    accepts_calling = _title_verdict(reference, any_calling, 3)
    default_called: list[str] = []
    default_calling: list[str] = []
    if accepts_called is False:
        for title in cfg.dicom.default_called_aes:
            if title.strip() != ae_title.strip():
                a, _ = await run_attempt(target, spec("default_called_ae", called=title, uid=auth))
                if a.outcome == "accepted":
                    default_called.append(title)
    if accepts_calling is False:
        for title in cfg.dicom.default_calling_aes:
            if title.strip() != calling.strip():
                a, _ = await run_attempt(target, spec("default_calling_ae", calling_ae=title, uid=auth))
                if a.outcome == "accepted":
                    default_calling.append(title)

    # 4. User Identity Negotiation.
    uid_result = None
    if cfg.dicom.user_identity:
        invalid: dict[int, AssociationAttempt] = {}
        notes = list(uid_notes)
        for t in range(1, 6):
            if t == 2 and not passcode_ok:
                notes.append("type 2 not tested: no TLS and scan.intrusive.passcode_over_plaintext is false")
                continue
            invalid[t], _ = await run_attempt(target, spec(f"user_identity_{t}_invalid", uid=user_identity.invalid_identity(t)))
        valid_attempts: dict[int, AssociationAttempt] = {}
        for v in valid:
            valid_attempts[v.identity_type], _ = await run_attempt(
                target, spec(f"user_identity_{v.identity_type}_valid", uid=v.rq))
        uid_result = user_identity.classify(baseline, invalid, valid_attempts, notes)

    # 5. Intrusive measurements, alone on the host (see _HostGate).
    # Timers first: they last at least the acceptor's ARTIM, so by the time they end every connection
    # that our inventory and identification left in the acceptor's ARTIM state (an nmap connect scan
    # leaves one per port in pynetdicom) has expired and no longer takes one of the slots that the
    # max-associations count must see. The timer connections themselves are closed when they end.
    arrive()
    max_assoc = reached = None
    max_reject = None
    timers = {}
    intrusive = ctx.config.scan.intrusive
    if intrusive.max_associations or intrusive.measure_timeouts:
        await gate.ordinary_done.wait()
        async with gate.intrusive:
            ctx.progress(f"DICOM {label}: intrusive measurements (timers up to {cfg.dicom.timer_cap_seconds:.0f} s,"
                         " max associations)")
            if intrusive.measure_timeouts:
                timers = await dicom_params.measure_timers(target, ae_title, cfg.dicom.timer_cap_seconds)
            if intrusive.max_associations and reference.outcome == "accepted":
                max_assoc, reached, max_reject = await dicom_params.measure_max_associations(
                    target, spec("max_associations", uid=auth), intrusive.max_associations_cap)

    contexts: list[PresentationContextResult] = reference.contexts if reference.outcome == "accepted" else []
    unauth_qr = [c.name for c in baseline.contexts if baseline.outcome == "accepted" and c.accepted
                 and service_of(c.abstract_syntax) in ("query_retrieve", "worklist")]
    artim = timers.get("artim")
    timer_ev = [t.evidence for t in timers.values() if t.evidence]
    return ApplicationEntity(
        **base,
        verification=(reference.outcome == "accepted" and reference.echo_status == 0)
        if reference.outcome in ("accepted", "rejected", "aborted") else None,
        accepts_any_called_ae=accepts_called,
        accepts_any_calling_ae=accepts_calling,
        implementation_class_uid=reference.implementation_class_uid,
        implementation_version_name=reference.implementation_version_name,
        implementation=recognise(reference.implementation_class_uid),
        max_pdu_length=reference.max_pdu_length,
        user_identity=uid_result or user_identity.classify(None, {}, {}, ["user identity not probed"]),
        artim_seconds=artim.seconds if artim is not None and not artim.exceeded_cap else None,
        max_associations=max_assoc,
        max_associations_reached_cap=reached,
        max_associations_reject=max_reject,
        called_ae_reject=any_called.reject,
        calling_ae_reject=any_calling.reject,
        default_called_aes_accepted=default_called,
        default_calling_aes_accepted=default_calling,
        presentation_contexts=contexts,
        unauthenticated_query_retrieve=unauth_qr,
        timeouts=timers,
        attempts=target.attempts,
        associations_used=len(target.attempts),
        evidence=[*extra_ev, *(a.evidence for a in target.attempts if a.evidence), *timer_ev],
        duration_ms=round((time.perf_counter() - start) * 1000, 3),
    )


async def _guarded(ctx: AuditContext, ae_title: str, host: str, port: int, tls: bool, configured: bool,
                   gate: _HostGate | None = None) -> ApplicationEntity:
    """The per-AE audit bounded by ``timeouts.endpoint``; a bug or overrun becomes an error result.

    With intrusive steps an AE may wait for the other AEs of its host, so its bound grows with them.
    """
    endpoint = ctx.config.scan.timeouts.endpoint
    bound = endpoint
    intrusive = ctx.config.scan.intrusive
    if intrusive.max_associations or intrusive.measure_timeouts:
        per_ae = endpoint + (ctx.config.scan.dicom.timer_cap_seconds if intrusive.measure_timeouts else 0)
        bound = per_ae * max(1, gate.pending if gate else 1)
    label = f"{host}:{port}/{'dicom-tls' if tls else 'dicom'}"
    try:
        return await asyncio.wait_for(_audit_ae(ctx, ae_title, host, port, tls, configured, gate), bound)
    except TimeoutError:
        ev = ctx.evidence.add("dicom.assoc", label, ok=False, reason=Reason.TIMEOUT,
                              summary=f"AE {ae_title}: audit did not finish within {bound} s")
        return ApplicationEntity(ae_title=ae_title, host=host, port=port, tls=tls, configured=configured,
                                 error=f"audit did not finish within {bound} s", evidence=[ev.id])
    except Exception as exc:  # architecture rule 3: never raise out to the runner
        ev = ctx.evidence.add("dicom.assoc", label, ok=False, reason=Reason.INTERNAL_ERROR,
                              summary=f"AE {ae_title}: internal error {type(exc).__name__}")
        return ApplicationEntity(ae_title=ae_title, host=host, port=port, tls=tls, configured=configured,
                                 error=f"internal error: {type(exc).__name__}", evidence=[ev.id])


def _targets(ctx: AuditContext, endpoints: list[Endpoint]) -> list[tuple[str, str, int, bool, bool]]:
    cfg = ctx.config
    out: list[tuple[str, str, int, bool, bool]] = []
    seen: set[tuple[str, int]] = set()
    ae: ApplicationEntityConfig
    for ae in cfg.application_entities:
        if ae.role == "scu":
            continue
        addr = cfg.address_of(ae.host)
        out.append((ae.ae_title, addr, ae.port, ae.tls, True))
        seen.add((addr, ae.port))
    for ep in endpoints:
        if ep.protocol != "tcp" or ep.state != "open" or ep.service not in ("dicom", "dicom-tls"):
            continue
        addr = cfg.address_of(ep.host)
        if (addr, ep.port) in seen:
            continue
        seen.add((addr, ep.port))
        out.append((UNKNOWN_AE, addr, ep.port, ep.service == "dicom-tls", False))
    return out


async def audit_application_entities(ctx: AuditContext, endpoints: list[Endpoint]) -> list[ApplicationEntity]:
    """Audit every configured SCP AE and every identified DICOM endpoint without one (Called AE ANY-SCP).

    Never raises; AEs are audited concurrently, each association holding a limiter slot for its host.
    """
    try:
        targets = _targets(ctx, endpoints)
    except Exception as exc:
        ctx.evidence.add("dicom.assoc", "*", ok=False, reason=Reason.INTERNAL_ERROR,
                         summary=f"cannot list DICOM targets: {type(exc).__name__}")
        return []
    gates = {host: _HostGate(sum(1 for t in targets if t[1] == host)) for host in {t[1] for t in targets}}
    return list(await asyncio.gather(*(_guarded(ctx, *t, gates[t[1]]) for t in targets)))
