"""One association attempt against an acceptor, turned into an :class:`AssociationAttempt` and Evidence.

PS3.8 §9.3 (PDUs), §7.1 (A-ASSOCIATE), §7.2 (A-RELEASE), PS3.7 §9.3.5 (C-ECHO). Every step has its
own deadline (connect, TLS handshake, ACSE answer, DIMSE answer), each attempt holds one limiter slot
for its host, and no exception leaves :func:`run_attempt`: failures become outcomes with a Reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from dcsaudit.context import AuditContext
from dcsaudit.models.core import Reason
from dcsaudit.models.dicom import (
    AbortInfo,
    AssociationAttempt,
    AssocOutcome,
    AttemptPurpose,
    Credentials,
    PresentationContextResult,
    RejectTriple,
)
from dcsaudit.models.tls import TlsSession
from dcsaudit.probes import dicom_ul as ul
from dcsaudit.rules.sop_classes import SopClass
from dcsaudit.rules.tls_suites import cipher_suites

log = logging.getLogger(__name__)

OUTCOME_REASON: dict[str, Reason | None] = {
    "accepted": None, "rejected": None, "aborted": None, "closed": Reason.RESET, "refused": Reason.REFUSED,
    "timeout": Reason.TIMEOUT, "tls_failure": Reason.TLS_FAILURE, "protocol_error": Reason.PROTOCOL_ERROR,
    "error": Reason.INTERNAL_ERROR,
}


@dataclass
class Target:
    """Where and how to connect; shared by every attempt on one AE."""

    ctx: AuditContext
    host: str
    port: int
    ssl_ctx: ssl.SSLContext | None
    timeouts: ul.Timeouts
    attempts: list[AssociationAttempt] = field(default_factory=list)
    busy_retry_seconds: float = 32.0
    # Set once an attempt stayed busy through the whole retry budget: later attempts on this product
    # get a short budget, so a product that is full for the whole audit costs one budget, not twenty.
    busy_exhausted: bool = False
    # Set once the default client context failed its handshake and ``ssl_ctx`` was widened to legacy
    # versions and suites (see :func:`widen`); every later attempt on this AE uses the widened context.
    widened: bool = False

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}/{'dicom-tls' if self.ssl_ctx else 'dicom'}"


# Every suite this OpenSSL has, at security level 0 (SHA-1 signatures, small keys), except NULL
# encryption and anonymous key exchange: a User Identity passcode may travel inside the session.
WIDE_CIPHERS = "ALL:!eNULL:!aNULL:@SECLEVEL=0"
_OP_LEGACY_SERVER_CONNECT = getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)  # servers without RFC 5746


def widen(sc: ssl.SSLContext) -> None:
    """Let ``sc`` negotiate what a legacy DICOM TLS server accepts (TLS 1.0/1.1, static RSA, CBC-SHA1 …).

    PS3.15's retired profiles (B.1 Basic, B.3 AES: TLS_RSA_WITH_AES_128_CBC_SHA) are outside Python's
    and the distribution's defaults. The association audit runs before the TLS audit, so rather than the
    suites that audit will find, it offers everything OpenSSL can speak and records what was chosen.
    Changed in place: the AE's context holds its credentials and cannot be copied.
    """
    sc.set_ciphers(WIDE_CIPHERS)
    sc.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    sc.options |= _OP_LEGACY_SERVER_CONNECT


@functools.cache
def _iana_names() -> dict[str, str]:
    return {s.openssl: s.iana for s in cipher_suites().values() if s.openssl}


def _iana(openssl_name: str) -> str:
    return _iana_names().get(openssl_name, openssl_name)


def session_of(writer: asyncio.StreamWriter, widened: bool) -> TlsSession | None:
    """The version and suite of the TLS session under ``writer`` (None for plain TCP)."""
    obj = writer.get_extra_info("ssl_object")
    if not isinstance(obj, ssl.SSLObject):
        return None
    suite, version = obj.cipher(), obj.version()
    if suite is None or version is None:
        return None
    return TlsSession(version="TLSv1.0" if version == "TLSv1" else version,
                      cipher_suite=_iana(suite[0]), widened=widened)


async def connect(target: Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TCP (and TLS) connect; a TLS handshake the default context cannot complete is tried once more widened.

    A certificate verification failure is not retried: a configured CA is the operator's choice.
    """
    try:
        return await ul.open_stream(target.host, target.port, target.timeouts, target.ssl_ctx)
    except ssl.SSLCertVerificationError:
        raise
    except ssl.SSLError as exc:
        if target.ssl_ctx is None or target.widened:
            raise
        widen(target.ssl_ctx)
        target.widened = True
        log.info("%s: TLS handshake failed with the default client context (%s); retrying with legacy versions "
                 "and suites enabled", target.label, exc.reason or type(exc).__name__)
        return await ul.open_stream(target.host, target.port, target.timeouts, target.ssl_ctx)


@dataclass(frozen=True)
class Spec:
    purpose: AttemptPurpose
    called_ae: str
    calling_ae: str
    sop_classes: tuple[SopClass, ...]
    user_identity: ul.UserIdentityRQ | None = None
    echo: bool = True
    credentials: Credentials | None = None  # of ``user_identity``: dcsaudit's invalid ones or the configured ones
    run: int | None = None  # max_associations: counting run
    index: int | None = None  # max_associations: position among the held associations


@dataclass
class Held:
    """An association left open (max-associations and idle-timer measurements)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


def classify_exception(exc: BaseException) -> tuple[AssocOutcome, str]:
    if isinstance(exc, ul.PeerClosed):
        return "closed", str(exc)
    if isinstance(exc, ul.PduError):
        return "protocol_error", str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout", "no answer before the deadline"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(exc, ssl.SSLError):
        return "tls_failure", f"{type(exc).__name__}: {exc.reason or exc}"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError)):
        return "closed", f"connection reset ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return "error", f"{type(exc).__name__}: {exc.strerror or exc}"
    return "error", f"{type(exc).__name__}"


def _contexts(spec: Spec, info: ul.AcceptInfo | None) -> list[PresentationContextResult]:
    out = []
    for i, sop in enumerate(spec.sop_classes):
        cid = 2 * i + 1
        result, ts = (info.contexts.get(cid, (None, None)) if info else (None, None))
        out.append(PresentationContextResult(
            context_id=cid, abstract_syntax=sop.uid, name=sop.name,
            transfer_syntaxes=[ul.IMPLICIT_LE, ul.EXPLICIT_LE], result=result,
            accepted_transfer_syntax=ts if result == 0 else None))
    return out


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, context_id: int, timeout: float) -> int | None:
    writer.write(ul.encode_c_echo_rq(context_id))
    await writer.drain()
    for _ in range(16):  # a C-ECHO-RSP fits in one PDV; bound the loop against a chatty peer
        pdu = await ul.read_pdu(reader, timeout)
        if pdu.pdu_type != 4:
            raise ul.PduError(f"{pdu.name} instead of the C-ECHO-RSP")
        last, status = ul.decode_command_status(pdu.body)
        if last:
            return status
    raise ul.PduError("no complete C-ECHO-RSP after 16 PDUs")


async def _release(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> bool:
    writer.write(ul.RELEASE_RQ)
    await writer.drain()
    for _ in range(4):
        pdu = await ul.read_pdu(reader, timeout)
        if pdu.pdu_type == 6:
            return True
        if pdu.pdu_type == 7:
            return False
    return False


# Retries after a transient answer (PS3.8 §9.3.4): the first waits this long, each next one twice as
# long, at most RETRY_MAX_DELAY.
RETRY_FIRST_DELAY = 0.05
RETRY_MAX_DELAY = 2.0
# An A-ABORT in answer to the request: a product that aborts by policy would otherwise cost the whole
# budget on every probe; an overloaded one frees a thread within this.
ABORT_RETRY_SECONDS = 2.0
SHORT_RETRY_SECONDS = 1.0
# A TCP close or reset instead of any PDU is no answer about titles or identity (a flaky link, a
# proxy, a restarting service): the request is tried again on fresh connections, a few times, and an
# attempt that stays ``closed`` proves nothing (rules/association_answers reads it as no answer).
CLOSED_RETRIES = 2
CLOSED_RETRY_SECONDS = 3.0


def _retry_plan(target: Target, attempt: AssociationAttempt) -> tuple[int, float]:
    """(retries at most, seconds from the first try) for the transient answer of ``attempt``.

    - (2, 3, x): the presentation layer is congested or at its association limit — the product is
      busy, often with a connection this audit's inventory left for the acceptor's ARTIM timer to
      end: retried for ``scan.dicom.busy_retry_seconds`` (ARTIM + 2 s by default).
    - another rejected-transient (e.g. pynetdicom's (2, 2, 1) for a refused identity): one retry; a
      repeated answer is the product's answer, not congestion.
    - A-ABORT instead of an answer: a short budget (ABORT_RETRY_SECONDS).
    """
    if attempt.outcome == "closed":
        return CLOSED_RETRIES, CLOSED_RETRY_SECONDS
    if attempt.outcome == "aborted":
        return 100, min(ABORT_RETRY_SECONDS, target.busy_retry_seconds)
    if attempt.reject is not None and attempt.reject.source == 3:
        return 100, SHORT_RETRY_SECONDS if target.busy_exhausted else target.busy_retry_seconds
    return 1, target.busy_retry_seconds


def _transient_text(attempt: AssociationAttempt) -> str:
    if attempt.outcome == "closed":
        return "TCP closed or reset without a PDU"
    r = attempt.reject
    return f"A-ASSOCIATE-RJ ({r.result}, {r.source}, {r.reason})" if r is not None else "A-ABORT"


def _congested(attempt: AssociationAttempt) -> bool:
    return attempt.outcome == "aborted" or (attempt.reject is not None and attempt.reject.source == 3)


async def run_attempt(target: Target, spec: Spec, *, hold: bool = False, retry: bool = True
                      ) -> tuple[AssociationAttempt, Held | None]:
    """One association attempt, retried on a fresh connection while the answer is transient, or
    while the peer closes or resets the connection without any PDU (a few times: CLOSED_RETRIES).

    What persists through the retry budget is recorded as ``busy`` when it is congestion or an abort
    (the attempt then proves nothing), or as the product's definite answer when it is another
    rejected-transient that repeats. Every try leaves evidence; the retried ones are listed in
    ``retry_evidence``.
    """
    first = time.monotonic()
    delay = RETRY_FIRST_DELAY
    retried: list[str] = []
    while True:
        attempt, held = await _attempt_once(target, spec, hold=hold, retry=len(retried))
        if not (attempt.transient or attempt.outcome == "closed") or not retry:
            break
        most, budget = _retry_plan(target, attempt)
        if len(retried) >= most or time.monotonic() - first + delay > budget:
            busy = _congested(attempt)
            if busy and budget >= target.busy_retry_seconds:
                target.busy_exhausted = True
            attempt = attempt.model_copy(update={"busy": busy})
            if busy:
                log.warning("%s %s: product busy after %d retries (%s): no fact is taken from this attempt",
                            target.label, attempt.label, len(retried), _transient_text(attempt))
            break
        retried.append(attempt.evidence or "")
        target.attempts.pop()  # the retried try is kept as evidence, not as an attempt
        log.info("%s %s: transient answer (%s), retry %d in %.2f s", target.label, attempt.label,
                 _transient_text(attempt), len(retried), delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_DELAY)
    if retried or attempt.busy:
        attempt = attempt.model_copy(update={"retries": len(retried), "retry_evidence": retried})
        target.attempts[-1] = attempt
    return attempt, held


async def _attempt_once(target: Target, spec: Spec, *, hold: bool, retry: int) -> tuple[AssociationAttempt, Held | None]:
    """Associate, optionally C-ECHO, then release (or keep the association open when ``hold``)."""
    ctx = target.ctx
    start = time.perf_counter()
    fields: dict[str, object] = {}
    outcome: AssocOutcome = "error"
    error = ""
    info: ul.AcceptInfo | None = None
    held: Held | None = None
    writer: asyncio.StreamWriter | None = None
    async with ctx.limiter.slot(target.host):
        try:
            reader, writer = await connect(target)
            fields["tls"] = session_of(writer, target.widened)
            contexts = [ul.ProposedContext(2 * i + 1, s.uid) for i, s in enumerate(spec.sop_classes)]
            writer.write(ul.encode_associate_rq(spec.called_ae, spec.calling_ae, contexts, spec.user_identity))
            await writer.drain()
            pdu = await ul.read_pdu(reader, target.timeouts.acse)
            if pdu.pdu_type == 2:
                outcome = "accepted"
                info = ul.decode_associate_ac(pdu.body)
                fields.update(
                    implementation_class_uid=info.implementation_class_uid,
                    implementation_version_name=info.implementation_version_name,
                    max_pdu_length=info.max_pdu_length,
                    user_identity_response=info.user_identity_response is not None,
                    user_identity_response_length=(len(info.user_identity_response)
                                                   if info.user_identity_response is not None else None),
                )
                echo_cx = next((c for i, c in enumerate(contexts)
                                if spec.sop_classes[i].uid == ul.VERIFICATION and info.contexts.get(c.context_id, (1,))[0] == 0),
                               None)
                if spec.echo and echo_cx is not None:
                    fields["echo_status"] = await _echo(reader, writer, echo_cx.context_id, target.timeouts.dimse)
                if hold:
                    held = Held(reader, writer)
                elif any(r == 0 for r, _ in info.contexts.values()):
                    fields["released"] = await _release(reader, writer, target.timeouts.acse)
                else:
                    # No context accepted: nothing to release gracefully; PS3.8 lets the requestor abort.
                    writer.write(ul.ABORT_RQ)
                    fields["released"] = False
            elif pdu.pdu_type == 3:
                result, source, reason = ul.decode_associate_rj(pdu.body)  # PduError: protocol_error
                outcome = "rejected"
                rs, ss, ns = ul.describe_reject(result, source, reason)
                fields["reject"] = RejectTriple(result=result, source=source, reason=reason,
                                                result_str=rs, source_str=ss, reason_str=ns)
            elif pdu.pdu_type == 7:
                source, reason = ul.decode_abort(pdu.body)  # PduError: protocol_error
                outcome = "aborted"
                fields["abort"] = AbortInfo(source=source, reason=reason,
                                            reason_str=ul.ABORT_REASON.get(reason, "reserved"))
            else:
                outcome, error = "protocol_error", f"{pdu.name} in answer to A-ASSOCIATE-RQ"
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # errors are results: a probe never raises
            if outcome == "accepted":
                # The association was accepted; the failure came in C-ECHO or release. Keep the answer.
                kind, error = classify_exception(exc)
                error = f"after acceptance: {kind}: {error}"
            else:
                outcome, error = classify_exception(exc)
        finally:
            if writer is not None and held is None:
                await ul.close_quietly(writer)
    duration = (time.perf_counter() - start) * 1000
    uid = spec.user_identity
    attempt = AssociationAttempt(
        purpose=spec.purpose, credentials=spec.credentials if uid else None, run=spec.run, index=spec.index,
        called_ae=spec.called_ae, calling_ae=spec.calling_ae, outcome=outcome, error=error,
        contexts=_contexts(spec, info), user_identity_type=uid.identity_type if uid else None,
        positive_response_requested=uid.positive_response_requested if uid else None,
        duration_ms=round(duration, 3), **fields,
    )
    summary = f"{attempt.label}{f' (retry {retry})' if retry else ''}: {spec.calling_ae!r} -> {spec.called_ae!r}: {outcome}"
    if attempt.reject:
        summary += f" ({attempt.reject.result}, {attempt.reject.source}, {attempt.reject.reason})"
    if error:
        summary += f" — {error}"
    ev = ctx.evidence.add(
        "dicom.assoc", target.label, ok=outcome in ("accepted", "rejected", "aborted"), summary=summary,
        reason=OUTCOME_REASON[outcome] if not (outcome == "accepted" and error) else Reason.PROTOCOL_ERROR,
        data=attempt.model_dump(mode="json", exclude={"evidence"}), duration_ms=duration)
    attempt = attempt.model_copy(update={"evidence": ev.id})
    target.attempts.append(attempt)
    return attempt, held


@contextlib.asynccontextmanager
async def holding(target: Target) -> AsyncIterator[list[Held]]:
    """A list of held associations that are all released (or aborted) on exit."""
    held: list[Held] = []
    try:
        yield held
    finally:
        await asyncio.gather(*(release_held(h, target.timeouts.acse) for h in held), return_exceptions=True)


async def release_held(h: Held, timeout: float) -> None:
    try:
        await _release(h.reader, h.writer, min(timeout, 2.0))
    except Exception:
        with contextlib.suppress(Exception):
            h.writer.write(ul.ABORT_RQ)
    finally:
        await ul.close_quietly(h.writer)
