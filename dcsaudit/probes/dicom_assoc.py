"""DICOM association audit of each Application Entity as acceptor (PS3.8 §9.3, PS3.7 D.3.3).

Per AE, in this order (one association each unless said otherwise):

0. Only for a port found by identification whose request under the guessed title (``ANY-SCP``) was
   refused as an unknown Called AE Title: the vendor-default titles (``default_called_ae``), until one
   is accepted; the audit then runs under that title, which is the product's (a random one is refused).
1. ``baseline`` — configured Called/Calling AE titles, Verification plus the configured SOP classes as
   presentation contexts, C-ECHO, release: verification, implementation identity (PS3.7 D.3.3.2),
   Maximum Length, accepted contexts. With valid user-identity credentials configured and the baseline
   rejected, a second baseline carries them (the product may require an identity).
2. ``any_called_ae`` — 16 random characters as Called AE; ``any_calling_ae`` — random Calling AE.
   The reject triples are kept (PS3.8 §9.3.4: (1, 1, 7) called / (1, 1, 3) calling not recognised).
3. Vendor-default titles (``scan.dicom.default_called_aes`` / ``default_calling_aes``), only where the
   random title was refused (otherwise every title is accepted anyway).
4. User Identity Negotiation types 1–5 with invalid, then valid credentials (``user_identity``).
5. Intrusive, opt-in: ARTIM / idle / request timers (bounded by the timer cap) and the maximum
   number of simultaneous associations (up to the configured cap, counted twice).

A host gets at most ``scan.dicom.associations_per_host`` associations from the audit at a time
(default 1: modalities often allow one or two). A transient answer is retried on a fresh connection
(:func:`dcsaudit.probes.dicom_client.run_attempt`); what the answers prove is decided in
:mod:`dcsaudit.rules.association_answers`.

Typically 8 associations for an acceptor that takes any title, up to ~20 with title checks, identity
types and valid credentials; against a local pynetdicom or DCMTK SCP the non-intrusive part takes
well under a second. Only C-ECHO is ever sent as a DIMSE operation: no patient data moves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import ssl
import string
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from dcsaudit import budgets
from dcsaudit.config import ApplicationEntityConfig, ConfigError, DeploymentConfig
from dcsaudit.context import AuditContext
from dcsaudit.models.core import Reason
from dcsaudit.models.dicom import (
    ApplicationEntity,
    AssociationAttempt,
    AttemptPurpose,
    Credentials,
    MeasuredTimeout,
    PresentationContextResult,
)
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.probes import dicom_params, dicom_ul, user_identity
from dcsaudit.probes.dicom_client import Spec, Target, run_attempt
from dcsaudit.rules import association_answers
from dcsaudit.rules.implementations import recognise
from dcsaudit.rules.services import DICOM_SERVICES
from dcsaudit.rules.sop_classes import SopClass, resolve, service_of

T = TypeVar("T")
UNKNOWN_AE = "ANY-SCP"
NOT_FINISHED = "not audited: the DICOM stage's time budget ran out first"
# Outcomes that mean "no DICOM conversation is possible here": stop auditing this AE after the baseline.
FATAL = {"closed", "refused", "timeout", "tls_failure", "protocol_error", "error"}


def _called_title_refused(attempt: AssociationAttempt) -> bool:
    """Rejected by the service user because the Called AE Title is not recognised (PS3.8 §9.3.4: (1, 1, 7))."""
    return attempt.title_reject and attempt.reject is not None and attempt.reject.reason == 7


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


@dataclass
class _AeTarget:
    ae_title: str
    host: str
    port: int
    tls: bool
    configured: bool
    guess_refused: bool = False  # identification's request under this (guessed) title got (1, 1, 7)
    adopted: bool = False  # the title is a vendor default the product accepted in place of a refused guess

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}/{'dicom-tls' if self.tls else 'dicom'}"


@dataclass
class _Held:
    """What the ordinary phase hands to the intrusive one."""

    target: Target
    spec: Spec  # the accepted reference request (titles, identity) as the idle association; max-associations
    # counts copies of it


def _finish(ae: ApplicationEntity, target: Target, start: float, **update: object) -> ApplicationEntity:
    """The AE with its attempts, evidence, retry count and duration brought up to date."""
    attempts = target.attempts
    ev = list(dict.fromkeys([*ae.evidence, *(e for a in attempts for e in (*a.retry_evidence, a.evidence) if e)]))
    return ae.model_copy(update={
        "attempts": list(attempts), "associations_used": sum(1 + a.retries for a in attempts),
        "busy_retries": sum(a.retries for a in attempts), "evidence": ev,
        "duration_ms": round((time.perf_counter() - start) * 1000, 3), **update})


def _error_ae(ctx: AuditContext, t: _AeTarget, reason: Reason, summary: str, error: str) -> ApplicationEntity:
    ev = ctx.evidence.add("dicom.assoc", t.label, ok=False, reason=reason, summary=f"AE {t.ae_title}: {summary}")
    return ApplicationEntity(ae_title=t.ae_title, host=t.host, port=t.port, tls=t.tls, configured=t.configured,
                             calling_ae_title=ctx.config.scan.calling_ae_title, error=error, evidence=[ev.id])


async def _ordinary(ctx: AuditContext, t: _AeTarget) -> tuple[ApplicationEntity, _Held | None]:
    """Baseline, AE title policy, vendor-default titles and User Identity: one association at a time."""
    start = time.perf_counter()
    cfg = ctx.config.scan
    calling = cfg.calling_ae_title
    base = ApplicationEntity(ae_title=t.ae_title, host=t.host, port=t.port, tls=t.tls, configured=t.configured,
                             calling_ae_title=calling)
    sops, unknown = resolve(list(cfg.dicom.sop_classes))
    if unknown:
        ev = ctx.evidence.add("dicom.assoc", t.label, ok=False, reason=Reason.SKIPPED,
                              summary=f"unknown SOP class names ignored: {', '.join(unknown)}")
        base = base.model_copy(update={"evidence": [ev.id]})
    try:
        ssl_ctx = build_ssl_context(ctx) if t.tls else None
    except (OSError, ssl.SSLError, ConfigError) as exc:
        ev = ctx.evidence.add("dicom.assoc", t.label, ok=False, reason=Reason.TLS_FAILURE,
                              summary=f"cannot build the TLS client context: {type(exc).__name__}")
        return base.model_copy(update={"error": "TLS client context unusable",
                                       "evidence": [*base.evidence, ev.id]}), None
    target = Target(ctx, t.host, t.port, ssl_ctx, _timeouts(ctx), busy_retry_seconds=cfg.dicom.busy_retry_seconds)
    verification = (sops[0],)

    def spec(purpose: AttemptPurpose, called: str | None = None, calling_ae: str = calling,
             sop: tuple[SopClass, ...] = verification, uid: dicom_ul.UserIdentityRQ | None = None,
             credentials: Credentials = "valid") -> Spec:
        # Only the baselines send a C-ECHO; the other probes only need the association answer. An
        # identity is the configured valid one unless it is one of the deliberately invalid probes.
        return Spec(purpose, t.ae_title if called is None else called, calling_ae, sop, uid,
                    echo=purpose in ("baseline", "baseline_with_identity"),
                    credentials=credentials if uid is not None else None)

    # A port found by identification is called by a guessed title. Where identification's request under that
    # title was refused as an unknown Called AE Title (1, 1, 7), every probe under it could only be refused for
    # its title and tell nothing (identity, title policy, contexts): the vendor-default titles are tried first,
    # one association each, and the first accepted one is the title the audit runs under.
    tried_called: set[str] = {t.ae_title.strip()} if t.guess_refused else set()
    if t.guess_refused:
        for title in cfg.dicom.default_called_aes:
            if title.strip() in tried_called:
                continue
            attempt, _ = await run_attempt(target, spec("default_called_ae", called=title))
            tried_called.add(title.strip())
            if attempt.outcome == "accepted":
                t = dataclasses.replace(t, ae_title=title, adopted=True)
                base = base.model_copy(update={"ae_title": title})
                break
            if not _called_title_refused(attempt):
                break  # busy, closed, or refused for another reason: titles cannot be told apart now
        # None accepted: the audit goes on under the guess; what does not rest on the title (a random title
        # refused with (1, 1, 7)) is still measured, the rest comes out undetermined with its reason.

    ctx.progress(f"DICOM {t.label} AE {t.ae_title}")
    baseline, _ = await run_attempt(target, spec("baseline", sop=tuple(sops)))
    if baseline.outcome in FATAL or baseline.busy:
        why = "product busy (rejected-transient or aborted through every retry)" if baseline.busy else baseline.outcome
        return _finish(base, target, start, error=f"baseline association: {why}"
                       + (f" ({baseline.error})" if baseline.error else "")), None

    passcode_ok = t.tls or ctx.config.scan.intrusive.passcode_over_plaintext
    valid, uid_notes = user_identity.valid_identities(ctx.config.credentials.user_identity, passcode_allowed=passcode_ok)
    reference = baseline  # the accepted request the title probes are compared with
    auth: dicom_ul.UserIdentityRQ | None = None
    if baseline.outcome != "accepted" and valid:
        best = sorted(valid, key=lambda v: {2: 0, 5: 1, 4: 2, 3: 3, 1: 4}[v.identity_type])[0]
        with_id, _ = await run_attempt(target, spec("baseline_with_identity", sop=tuple(sops), uid=best.rq))
        if with_id.outcome == "accepted":
            reference, auth = with_id, best.rq

    # AE title policy (PS3.8 §9.3.4).
    any_called, _ = await run_attempt(target, spec("any_called_ae", called=random_ae(), uid=auth))
    any_calling, _ = await run_attempt(target, spec("any_calling_ae", calling_ae=random_ae(), uid=auth))
    accepts_called = association_answers.title_policy(reference, any_called, 7)
    accepts_calling = association_answers.title_policy(reference, any_calling, 3)
    default_called: list[str] = []
    default_calling: list[str] = []
    if accepts_called is False:
        if t.adopted:  # the product's own title is a vendor default: found by trying it
            default_called.append(t.ae_title)
        for title in cfg.dicom.default_called_aes:  # those tried while finding the title were refused
            if title.strip() != t.ae_title.strip() and title.strip() not in tried_called:
                a, _ = await run_attempt(target, spec("default_called_ae", called=title, uid=auth))
                if a.outcome == "accepted":
                    default_called.append(title)
    if accepts_calling is False:
        for title in cfg.dicom.default_calling_aes:
            if title.strip() != calling.strip():
                a, _ = await run_attempt(target, spec("default_calling_ae", calling_ae=title, uid=auth))
                if a.outcome == "accepted":
                    default_calling.append(title)

    # User Identity Negotiation: per type, invalid then (configured) valid credentials.
    uid_result = association_answers.classify_identity(None, {}, {}, ["user identity not probed"])
    if cfg.dicom.user_identity:
        invalid: dict[int, AssociationAttempt] = {}
        not_tested: dict[int, str] = {}
        for ty in range(1, 6):
            if ty == 2 and not passcode_ok:
                not_tested[2] = "not sent: no TLS and scan.intrusive.passcode_over_plaintext is false"
                continue
            invalid[ty], _ = await run_attempt(target, spec("user_identity", uid=user_identity.invalid_identity(ty),
                                                            credentials="invalid"))
        valid_attempts: dict[int, AssociationAttempt] = {}
        for v in valid:
            valid_attempts[v.identity_type], _ = await run_attempt(target, spec("user_identity", uid=v.rq))
        uid_result = association_answers.classify_identity(baseline, invalid, valid_attempts, list(uid_notes), not_tested)

    accepted = reference.outcome == "accepted"
    contexts: list[PresentationContextResult] = reference.contexts if accepted else []
    unauth_qr = [c.name for c in baseline.contexts if baseline.outcome == "accepted" and c.accepted
                 and service_of(c.abstract_syntax) in ("query_retrieve", "worklist")]
    ae = _finish(
        base, target, start,
        verification=association_answers.verification(reference),
        accepts_any_called_ae=accepts_called,
        accepts_any_calling_ae=accepts_calling,
        implementation_class_uid=reference.implementation_class_uid,
        implementation_version_name=reference.implementation_version_name,
        implementation=recognise(reference.implementation_class_uid),
        max_pdu_length=reference.max_pdu_length,
        reference_evidence=reference.evidence if accepted else None,
        user_identity=uid_result,
        called_ae_reject=any_called.reject,
        calling_ae_reject=any_calling.reject,
        default_called_aes_accepted=default_called,
        default_calling_aes_accepted=default_calling,
        presentation_contexts=contexts,
        unauthenticated_query_retrieve=unauth_qr,
    )
    held = _Held(target, spec("idle_association", uid=auth)) if accepted else None
    return ae, held


async def _intrusive(ctx: AuditContext, ae: ApplicationEntity, held: _Held) -> ApplicationEntity:
    """Opt-in measurements, run while no other probe talks to the host.

    Order: ARTIM and the idle timer first (both last at least the acceptor's own timer, so anything
    our inventory or identification left in the acceptor's ARTIM state has expired when they end),
    then the maximum number of associations, then the request timer (it may leave a slot taken until
    the acceptor's ARTIM fires, so nothing is measured after it).
    """
    start = time.perf_counter()
    target = held.target
    cfg = ctx.config.scan
    intrusive = cfg.intrusive
    label = f"{ae.host}:{ae.port}/{'dicom-tls' if ae.tls else 'dicom'}"
    ctx.progress(f"DICOM {label}: intrusive measurements (timers up to {cfg.dicom.timer_cap_seconds:.0f} s,"
                 " max associations)")
    timers: dict[str, MeasuredTimeout] = {}
    update: dict[str, object] = {}
    cap = cfg.dicom.timer_cap_seconds
    if intrusive.measure_timeouts:
        timers.update(await dicom_params.measure_timers(target, held.spec, cap, cfg.dicom.associations_per_host))
    if intrusive.max_associations:
        artim_t = timers.get("artim")
        await _wait_for_bare_connections(ctx, target, artim_t.seconds if artim_t is not None else None)
        m = await dicom_params.measure_max_associations(target, held.spec, intrusive.max_associations_cap)
        update.update(max_associations=m.count, max_associations_reached_cap=m.reached_cap if m.count else None,
                      max_associations_reject=m.reject, max_associations_evidence=m.evidence,
                      max_associations_note=m.note)
    if intrusive.measure_timeouts:
        timers["association_request"] = await dicom_params.measure_request_timer(target, cap)
    artim = timers.get("artim")
    timer_ev = [x.evidence for x in timers.values() if x.evidence]
    done = _finish(ae, target, start, timeouts=timers,
                   artim_seconds=artim.seconds if artim is not None and not artim.exceeded_cap else None, **update)
    return done.model_copy(update={"evidence": [*done.evidence, *timer_ev],
                                   "duration_ms": round(ae.duration_ms + done.duration_ms, 3)})


def _last_bare_connect(ctx: AuditContext, host: str, port: int) -> float | None:
    """When this audit last left a connection without a request on the port (inventory connect scan,
    failed TLS handshake), as a time.time() value; None if it never did."""
    key = f"{host}:{port}/tcp"
    times = [e.at.timestamp() for e in ctx.evidence.items() if e.target == key and e.data.get("bare_connect")]
    return max(times, default=None)


async def _wait_for_bare_connections(ctx: AuditContext, target: Target, artim: float | None) -> None:
    """Let the acceptor's ARTIM timer end the connections our inventory left, before counting slots.

    A product such as pynetdicom counts such a connection as an association until ARTIM fires; with a
    limit of two or more the ordinary probes do not notice, but the count would read one low. The
    ARTIM measured on this AE (+ 1 s) is waited out, else ``busy_retry_seconds`` (the ARTIM + 2 s the
    config assumes).
    """
    last = _last_bare_connect(ctx, target.host, target.port)
    if last is None:
        return
    wait = last + (artim + 1.0 if artim is not None else target.busy_retry_seconds) - time.time()
    if wait > 0:
        ctx.progress(f"DICOM {target.label}: waiting {wait:.0f} s for connections the inventory left to expire")
        await asyncio.sleep(wait)


async def _bounded_ae(ctx: AuditContext, t: _AeTarget, what: str, coro: Awaitable[T], bound: float,
                      fallback: Callable[[str, Reason], T]) -> T:
    """Await one phase of one AE within its budget; an overrun or a bug becomes an error result."""
    try:
        return await asyncio.wait_for(coro, bound)
    except TimeoutError:
        return fallback(f"{what} did not finish within {bound:.0f} s", Reason.TIMEOUT)
    except Exception as exc:  # errors are results: never raise out to the runner
        return fallback(f"{what}: internal error {type(exc).__name__}", Reason.INTERNAL_ERROR)


async def _audit_host(ctx: AuditContext, targets: list[tuple[int, _AeTarget]], sink: dict[int, ApplicationEntity]) -> None:
    """A host's AEs: ordinary probes ``associations_per_host`` AEs at a time, then intrusive ones alone.

    Products share one association limit across their AEs and ports, so the audit never holds more
    associations to a host than the config allows, and an intrusive measurement (which holds many,
    or holds one idle) runs only when nothing else of the audit talks to the host. Finished results
    go to ``sink`` at once, so a stage bound keeps them.
    """
    cfg = ctx.config
    gate = asyncio.Semaphore(cfg.scan.dicom.associations_per_host)
    ordinary_bound = budgets.dicom_ordinary_seconds(cfg)
    intrusive_bound = budgets.dicom_intrusive_seconds(cfg)

    async def ordinary(i: int, t: _AeTarget) -> tuple[int, _AeTarget, _Held | None]:
        def failed(msg: str, reason: Reason) -> tuple[ApplicationEntity, _Held | None]:
            return _error_ae(ctx, t, reason, msg, msg), None
        async with gate:
            ae, held = await _bounded_ae(ctx, t, "audit", _ordinary(ctx, t), ordinary_bound, failed)
        sink[i] = ae
        return i, t, held

    finished = await asyncio.gather(*(ordinary(i, t) for i, t in targets))
    if not budgets.dicom_intrusive_wanted(cfg):
        return
    for i, t, held in finished:
        if held is None:
            continue
        ae = sink[i]

        def partial(msg: str, reason: Reason, ae: ApplicationEntity = ae, t: _AeTarget = t) -> ApplicationEntity:
            ev = ctx.evidence.add("dicom.timers", t.label, ok=False, reason=reason,
                                  summary=f"AE {t.ae_title}: intrusive measurements: {msg}")
            return ae.model_copy(update={"evidence": [*ae.evidence, ev.id]})
        sink[i] = await _bounded_ae(ctx, t, "intrusive measurements", _intrusive(ctx, ae, held), intrusive_bound,
                                    partial)


def _targets(cfg: DeploymentConfig, endpoints: list[Endpoint]) -> list[_AeTarget]:
    out: list[_AeTarget] = []
    seen: set[tuple[str, int]] = set()
    ae: ApplicationEntityConfig
    for ae in cfg.application_entities:
        if ae.role == "scu":
            continue
        addr = cfg.address_of(ae.host)
        out.append(_AeTarget(ae.ae_title, addr, ae.port, ae.tls, True))
        seen.add((addr, ae.port))
    for ep in endpoints:
        if ep.protocol != "tcp" or ep.state != "open" or ep.service not in DICOM_SERVICES:
            continue
        addr = cfg.address_of(ep.host)
        if (addr, ep.port) in seen:
            continue
        seen.add((addr, ep.port))
        ident = ep.identification
        answer = (ident.dicom_in_tls if ep.service == "dicom-tls" else ident.dicom) if ident else None
        refused = bool(answer and answer.called_ae.strip() == UNKNOWN_AE and answer.reject is not None
                       and (answer.reject.result, answer.reject.source, answer.reject.reason) == (1, 1, 7))
        out.append(_AeTarget(UNKNOWN_AE, addr, ep.port, ep.service == "dicom-tls", False, guess_refused=refused))
    return out


def aes_per_host(cfg: DeploymentConfig, endpoints: list[Endpoint]) -> list[int]:
    """How many AEs each host will have audited (for the stage budget)."""
    try:
        hosts = [t.host for t in _targets(cfg, endpoints)]
    except Exception:
        return []
    return budgets.per_host_counts(hosts)


async def audit_application_entities(ctx: AuditContext, endpoints: list[Endpoint],
                                     sink: dict[int, ApplicationEntity] | None = None) -> list[ApplicationEntity]:
    """Audit every configured SCP AE and every identified DICOM endpoint without one (Called AE ANY-SCP).

    Never raises. Hosts are audited in parallel; within a host see :func:`_audit_host`. ``sink``
    receives each AE as it finishes (index → AE), so a caller's outer bound can keep what finished.
    """
    try:
        targets = _targets(ctx.config, endpoints)
    except Exception as exc:
        ctx.evidence.add("dicom.assoc", "*", ok=False, reason=Reason.INTERNAL_ERROR,
                         summary=f"cannot list DICOM targets: {type(exc).__name__}")
        return []
    sink = {} if sink is None else sink
    by_host: dict[str, list[tuple[int, _AeTarget]]] = {}
    for i, t in enumerate(targets):
        by_host.setdefault(t.host, []).append((i, t))
        # Replaced when the AE finishes; what a caller's bound cuts off stays an error with its reason.
        sink[i] = ApplicationEntity(ae_title=t.ae_title, host=t.host, port=t.port, tls=t.tls,
                                    configured=t.configured, calling_ae_title=ctx.config.scan.calling_ae_title,
                                    error=NOT_FINISHED)
    await asyncio.gather(*(_audit_host(ctx, items, sink) for items in by_host.values()))
    return [sink[i] for i in sorted(sink)]
