"""Association parameters measured on the wire: ARTIM, association request timeout, idle association
timeout, maximum simultaneous associations (PS3.8 §9.1.5 ARTIM; PS3.2 Tables N.6-1 and N.7-1).

All are intrusive (they hold connections open or fill the acceptor's association table) and run only
when ``scan.intrusive.measure_timeouts`` / ``scan.intrusive.max_associations`` allow. Each timer is
bounded by ``scan.dicom.timer_cap_seconds``; a peer that outlasts the cap is reported as "> cap".

Timers run no more than ``scan.dicom.associations_per_host`` at a time: with a product that allows
one association, a timer connection left open would make the next one look refused.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from typing import Literal

from dcsaudit.models.core import Reason
from dcsaudit.models.dicom import AssociationAttempt, MeasuredTimeout, RejectTriple
from dcsaudit.probes import dicom_ul as ul
from dcsaudit.probes.dicom_client import Spec, Target, classify_exception, holding, run_attempt

EndedBy = Literal["close", "abort", "release", "reject", "data", "none", "error"]
SETTLE_SECONDS = 0.5
RETRY_PAUSE_MAX = 2.0


@dataclass(frozen=True)
class MaxAssociations:
    count: int | None  # None: undetermined (``note`` says why)
    reached_cap: bool
    reject: RejectTriple | None
    evidence: list[str] = field(default_factory=list)
    note: str = ""


async def _wait_for_peer_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cap: float) -> EndedBy:
    """Wait until the peer closes, aborts or asks to release; answers a release so it can finish."""
    deadline = time.monotonic() + cap
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "none"
        try:
            pdu = await ul.read_pdu(reader, left)
        except ul.PeerClosed:
            return "close"
        except TimeoutError:
            return "none"
        except (ConnectionError, ul.PduError):
            return "close"
        if pdu.pdu_type == 7:
            return "abort"
        if pdu.pdu_type == 5:
            writer.write(ul.RELEASE_RP)
            return "release"
        if pdu.pdu_type == 3:
            return "reject"


def _record(target: Target, name: str, cap: float, ended: EndedBy, seconds: float | None, error: str,
            attempt_evidence: str | None = None) -> MeasuredTimeout:
    result = MeasuredTimeout(seconds=seconds, cap_seconds=cap, exceeded_cap=ended == "none", ended_by=ended)
    summary = (f"{name}: peer ended the connection ({ended}) after {seconds} s" if seconds is not None
               else f"{name}: still open after {cap} s" if ended == "none" else f"{name}: not measured ({error})")
    ev = target.ctx.evidence.add("dicom.timers", target.label, ok=ended != "error", summary=summary,
                                 reason=None if ended != "error" else Reason.PROTOCOL_ERROR,
                                 data={**result.model_dump(mode="json"), "timer": name, "error": error,
                                       "association": attempt_evidence})
    return result.model_copy(update={"evidence": ev.id})


async def _timed_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cap: float
                     ) -> tuple[EndedBy, float | None, str]:
    """How and after how long the peer ends a connection we keep silent: (ended by, seconds, error)."""
    try:
        start = time.monotonic()
        ended = await _wait_for_peer_end(reader, writer, cap)
        return ended, (round(time.monotonic() - start, 3) if ended != "none" else None), ""
    except Exception as exc:
        kind, error = classify_exception(exc)
        return "error", None, f"{kind}: {error}"
    finally:
        await ul.close_quietly(writer)


async def _measure_silent(target: Target, name: str, cap: float, opening: bytes | None) -> MeasuredTimeout:
    """ARTIM (nothing sent after connect) or the request timer (half an A-ASSOCIATE-RQ sent)."""
    async with target.ctx.limiter.slot(target.host):
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await ul.open_stream(target.host, target.port, target.timeouts, target.ssl_ctx)
            if opening:
                writer.write(opening)
                await writer.drain()
        except Exception as exc:
            if writer is not None:
                await ul.close_quietly(writer)
            kind, error = classify_exception(exc)
            return _record(target, name, cap, "error", None, f"{kind}: {error}")
        ended, seconds, error = await _timed_end(reader, writer, cap)
    return _record(target, name, cap, ended, seconds, error)


async def _measure_idle(target: Target, spec: Spec, cap: float) -> MeasuredTimeout:
    """Idle association: an accepted association (retried while the product is busy), then silence."""
    attempt, held = await run_attempt(target, spec, hold=True)
    if held is None:
        why = "product busy" if attempt.busy else attempt.outcome
        return _record(target, "idle_association", cap, "error", None, f"no association to hold ({why})",
                       attempt.evidence)
    ended, seconds, error = await _timed_end(held.reader, held.writer, cap)
    return _record(target, "idle_association", cap, ended, seconds, error, attempt.evidence)


# Half an RQ: a header that promises 200 bytes, then silence (PS3.8 §9.1.5: ARTIM runs while waiting).
PARTIAL_RQ = struct.pack(">BBI", 0x01, 0, 200) + struct.pack(">HH", 1, 0)


async def measure_timers(target: Target, idle_spec: Spec, cap: float, at_once: int) -> dict[str, MeasuredTimeout]:
    """ARTIM (TCP open, nothing sent) and the idle-association timer, ``at_once`` at a time.

    Each ends with the product closing the connection itself, so neither leaves a slot taken.
    """
    gate = asyncio.Semaphore(at_once)

    async def one(coro: Awaitable[MeasuredTimeout]) -> MeasuredTimeout:
        async with gate:
            return await coro

    artim, idle = await asyncio.gather(one(_measure_silent(target, "artim", cap, None)),
                                       one(_measure_idle(target, idle_spec, cap)))
    return {"artim": artim, "idle_association": idle}


async def measure_request_timer(target: Target, cap: float) -> MeasuredTimeout:
    """Half an A-ASSOCIATE-RQ, then silence. Run last: a product that never times it out keeps the
    connection (and one association slot) until its ARTIM timer ends after we close."""
    return await _measure_silent(target, "association_request", cap, PARTIAL_RQ)


async def _count_once(target: Target, spec: Spec, cap: int, run: int) -> tuple[int, bool, AssociationAttempt | None]:
    """Open associations one after another, holding them, until the first refusal or ``cap``."""
    async with holding(target) as held:
        for i in range(cap):
            # Only the first waits out a busy product; a later refusal is the measurement itself.
            attempt, h = await run_attempt(
                target, replace(spec, purpose="max_associations", sop_classes=spec.sop_classes[:1], echo=False,
                                run=run, index=i + 1), hold=True, retry=i == 0)
            if h is None or attempt.outcome != "accepted":
                if h is not None:
                    held.append(h)
                return len(held), False, attempt
            held.append(h)
        return len(held), True, None


async def measure_max_associations(target: Target, spec: Spec, cap: int) -> MaxAssociations:
    """The maximum number of simultaneous associations: counted until two runs in a row agree.

    A connection someone else holds makes a run read low, so one run is no fact. The count is a fact
    when two consecutive runs agree and the first refusal was a limit (rejected-transient by the
    presentation layer, PS3.8 §9.3.4 (2, 3, 1|2)) or the cap was reached. Runs repeat, with pauses,
    for at most ``busy_retry_seconds``; counts that never settle are undetermined.
    """
    runs: list[tuple[int, bool, AssociationAttempt | None]] = []
    deadline = time.monotonic() + target.busy_retry_seconds
    pause = SETTLE_SECONDS
    while True:
        runs.append(await _count_once(target, spec, cap, len(runs) + 1))
        if len(runs) >= 2 and runs[-1][:2] == runs[-2][:2]:
            break
        if len(runs) >= 2 and time.monotonic() + pause > deadline:
            break
        await asyncio.sleep(pause)  # let the product end the threads of the released ones
        pause = min(pause * 2, RETRY_PAUSE_MAX)
    (n1, cap1, refusal1), (n2, cap2, refusal2) = runs[-2], runs[-1]
    evidence = [a.evidence for a in target.attempts if a.purpose == "max_associations" and a.evidence]
    reject = refusal2.reject if refusal2 is not None else None
    if n1 != n2 or cap1 != cap2:
        counts = ", ".join(str(n) for n, _, _ in runs)
        return MaxAssociations(None, False, reject, evidence, f"runs counted {counts} and never agreed twice in a "
                               "row: other connections held slots of the product")
    if cap1:
        return MaxAssociations(n1, True, None, evidence, "")
    assert refusal1 is not None and refusal2 is not None
    if n1 == 0:
        return MaxAssociations(None, False, reject, evidence, "the first association was not accepted ("
                               + ("product busy" if refusal2.busy else refusal2.outcome) + ")")
    limit = [r for r in (refusal1, refusal2) if r.reject is not None and r.reject.result == 2 and r.reject.source == 3]
    if len(limit) != 2:
        return MaxAssociations(None, False, reject, evidence, f"after {n1} associations the next ended "
                               f"'{refusal2.outcome}', not with a presentation-layer limit (2, 3, x)")
    return MaxAssociations(n1, False, reject, evidence, "")
