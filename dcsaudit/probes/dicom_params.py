"""Association parameters measured on the wire: ARTIM, association request timeout, idle association
timeout, maximum simultaneous associations (PS3.8 §9.1.5 ARTIM; PS3.2 Tables N.6-1 and N.7-1).

All are intrusive (they hold connections open or fill the acceptor's association table) and run only
when ``scan.intrusive.measure_timeouts`` / ``scan.intrusive.max_associations`` allow. Each timer is
bounded by ``scan.dicom.timer_cap_seconds``; a peer that outlasts the cap is reported as "> cap".
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Literal

from dcsaudit.models.core import Reason
from dcsaudit.models.dicom import MeasuredTimeout, RejectTriple
from dcsaudit.probes import dicom_ul as ul
from dcsaudit.probes.dicom_client import Spec, Target, classify_exception, holding, run_attempt

EndedBy = Literal["close", "abort", "release", "reject", "data", "none", "error"]


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


async def _measure(target: Target, name: str, cap: float, opening: bytes | None, called_ae: str | None) -> MeasuredTimeout:
    ctx = target.ctx
    ended: EndedBy = "error"
    seconds: float | None = None
    error = ""
    async with ctx.limiter.slot(target.host):
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await ul.open_stream(target.host, target.port, target.timeouts, target.ssl_ctx)
            if called_ae is not None:
                cx = [ul.ProposedContext(1, ul.VERIFICATION)]
                writer.write(ul.encode_associate_rq(called_ae, target.ctx.config.scan.calling_ae_title, cx))
                await writer.drain()
                pdu = await ul.read_pdu(reader, target.timeouts.acse)
                if pdu.pdu_type != 2:
                    raise ul.PduError(f"{pdu.name} instead of A-ASSOCIATE-AC; idle timer not measurable")
            elif opening:
                writer.write(opening)
                await writer.drain()
            start = time.monotonic()
            ended = await _wait_for_peer_end(reader, writer, cap)
            if ended != "none":
                seconds = round(time.monotonic() - start, 3)
        except Exception as exc:
            kind, error = classify_exception(exc)
            error = f"{kind}: {error}"
        finally:
            if writer is not None:
                await ul.close_quietly(writer)
    result = MeasuredTimeout(seconds=seconds, cap_seconds=cap, exceeded_cap=ended == "none", ended_by=ended)
    summary = (f"{name}: peer ended the connection ({ended}) after {seconds} s" if seconds is not None
               else f"{name}: still open after {cap} s" if ended == "none" else f"{name}: not measured ({error})")
    ev = ctx.evidence.add("dicom.timers", target.label, ok=ended != "error", summary=summary,
                          reason=None if ended != "error" else Reason.PROTOCOL_ERROR,
                          data={**result.model_dump(mode="json"), "timer": name, "error": error})
    return result.model_copy(update={"evidence": ev.id})


async def measure_timers(target: Target, called_ae: str, cap: float) -> dict[str, MeasuredTimeout]:
    """ARTIM (TCP open, nothing sent), association request (half an A-ASSOCIATE-RQ), idle association."""
    # Half an RQ: a header that promises 200 bytes, then silence (PS3.8 §9.1.5: ARTIM runs while waiting).
    partial = struct.pack(">BBI", 0x01, 0, 200) + struct.pack(">HH", 1, 0)
    artim, request, idle = await asyncio.gather(
        _measure(target, "artim", cap, None, None),
        _measure(target, "association_request", cap, partial, None),
        _measure(target, "idle_association", cap, None, called_ae),
    )
    return {"artim": artim, "association_request": request, "idle_association": idle}


async def measure_max_associations(target: Target, spec: Spec, cap: int) -> tuple[int, bool, RejectTriple | None]:
    """Open associations one after another, holding them, until the first refusal or ``cap``.

    Returns (associations accepted, the cap was reached, the triple of the refusal if it was an RJ).
    """
    async with holding(target) as held:
        for i in range(cap):
            attempt, h = await run_attempt(target, Spec(f"max_associations_{i + 1}", spec.called_ae, spec.calling_ae,
                                                        spec.sop_classes[:1], spec.user_identity, echo=False),
                                           hold=True)
            if h is None or attempt.outcome != "accepted":
                if h is not None:
                    held.append(h)
                return len(held), False, attempt.reject
            held.append(h)
        return len(held), True, None
