"""Syslog stream deframing: RFC 5425 §4.3 octet counting, and RFC 6587 §3.4.2 non-transparent framing.

Pure: bytes in, :class:`Frame` and :class:`Dropped` out, in stream order. No sockets, clocks or threads,
so the framing rules are tested on their own (``tests/test_framing.py``) and the collector only moves
bytes.

Octet counting (the standard, PS3.15 A.6): ``MSG-LEN SP SYSLOG-MSG`` with ``MSG-LEN = NONZERO-DIGIT
*DIGIT``. Non-transparent framing (a message starting with ``<`` and ending at LF, trailing CRs removed)
is accepted and marked as such, so the caller can report it. LF, CR and NUL between frames are skipped
(some senders add a trailer after octet-counted frames).

What is not a frame becomes a :class:`Dropped` carrying a :class:`FrameError`:

* resynchronising errors (a frame that starts with neither a MSG-LEN nor ``<``, a MSG-LEN with a leading
  zero): the octets are discarded through the next LF and deframing goes on;
* an oversize frame (longer than ``max_frame``): discarded without being buffered, by its declared
  length (octet counting) or through the next LF (non-transparent), and deframing goes on;
* fatal errors (no SP after at most 11 digits, a MSG-LEN that is not a number, a declared length above
  ``max_skip``): the stream cannot be trusted any more; :attr:`Deframer.failed` is set and later input
  is ignored.

Memory is bounded: between calls the deframer keeps at most ``max_frame + 12`` octets (one incomplete
frame and its MSG-LEN), whatever the sender does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

MAX_FRAME = 1024 * 1024  # octets; PS3.15 A.6 asks for >= 32768, RFC 5425 sets no maximum
MAX_SKIP = 64 * 1024 * 1024  # a declared length above this is not skipped: the stream is given up
MAX_LEN_DIGITS = 11  # MSG-LEN digits read before SP must appear

StreamFraming = Literal["octet-counting", "non-transparent"]

_SEPARATORS = b"\r\n\x00"
_CR = 0x0D


class FrameError(enum.Enum):
    """Why octets of the stream were not delivered as a frame."""

    MISSING_SP = "missing_sp"  # more than MAX_LEN_DIGITS digits, no SP (fatal)
    BAD_LENGTH = "bad_length"  # a non-digit before SP (fatal)
    LEADING_ZERO = "leading_zero"  # MSG-LEN starts with 0 (RFC 5425: NONZERO-DIGIT); resync at LF
    BAD_START = "bad_start"  # neither a MSG-LEN nor '<'; resync at LF
    OVERSIZE = "oversize"  # longer than max_frame; discarded
    ABSURD_LENGTH = "absurd_length"  # declared length above max_skip (fatal)
    TRUNCATED = "truncated"  # the stream ended inside a frame

    @property
    def fatal(self) -> bool:
        """The stream cannot be resynchronised: the deframer stops after this one."""
        return self in _FATAL


_FATAL = frozenset({FrameError.MISSING_SP, FrameError.BAD_LENGTH, FrameError.ABSURD_LENGTH})


@dataclass(frozen=True, slots=True)
class Frame:
    """One syslog message (SYSLOG-MSG) taken out of the stream."""

    payload: bytes
    framing: StreamFraming


@dataclass(frozen=True, slots=True)
class Dropped:
    """Octets that did not become a frame. ``length``: the declared MSG-LEN (octet counting), the octets
    held when the stream ended (TRUNCATED), or None. ``detail``: a sentence for a report."""

    error: FrameError
    detail: str
    length: int | None = None
    framing: StreamFraming | None = None


class Deframer:
    """Incremental deframer for one stream: :meth:`feed` each chunk received, :meth:`close` at the end."""

    def __init__(self, max_frame: int = MAX_FRAME, max_skip: int = MAX_SKIP) -> None:
        if max_frame < 1 or max_skip < max_frame:
            raise ValueError("need 1 <= max_frame <= max_skip")
        self.max_frame = max_frame
        self.max_skip = max_skip
        self._buf = bytearray()
        self._skip = 0  # octets of an oversize octet-counted frame still to discard
        self._skip_to_lf = False  # discarding through the next LF (oversize LF-framed, or resync)
        self._failed: FrameError | None = None
        self._closed = False

    @property
    def failed(self) -> FrameError | None:
        """The fatal error that stopped deframing, or None."""
        return self._failed

    @property
    def buffered(self) -> int:
        """Octets held for an incomplete frame (at most ``max_frame + MAX_LEN_DIGITS + 1``)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | Dropped]:
        """Take ``data`` (any split of the stream) and return what it completes, in stream order.

        After a fatal error, returns nothing. Raises ValueError after :meth:`close`."""
        if self._closed:
            raise ValueError("feed() after close()")
        if self._failed is not None:
            return []
        start = 0
        if self._skip:  # inside an oversize frame: discard without buffering
            start = min(self._skip, len(data))
            self._skip -= start
        if self._skip_to_lf and start < len(data):
            lf = data.find(b"\n", start)
            if lf < 0:
                return []
            self._skip_to_lf = False
            start = lf + 1
        self._buf += memoryview(data)[start:]
        return self._drain()

    def close(self) -> Dropped | None:
        """End of stream: a partial frame still held is reported as TRUNCATED (nothing after a fatal
        error, whose octets were already reported, nor inside a frame already dropped as oversize)."""
        self._closed = True
        held = len(self._buf)
        self._buf.clear()
        if held and self._failed is None:
            return Dropped(FrameError.TRUNCATED, f"stream ended inside a frame ({held} octets unframed)",
                           length=held)
        return None

    # ----------------------------------------------------------------------------------------------

    def _fail(self, out: list[Frame | Dropped], dropped: Dropped) -> list[Frame | Dropped]:
        self._failed = dropped.error
        self._buf.clear()
        out.append(dropped)
        return out

    def _discard_through_lf(self) -> None:
        """Drop the buffer up to and including its first LF, or all of it and the input until one."""
        lf = self._buf.find(b"\n")
        if lf < 0:
            self._buf.clear()
            self._skip_to_lf = True
        else:
            del self._buf[: lf + 1]

    def _drain(self) -> list[Frame | Dropped]:
        out: list[Frame | Dropped] = []
        buf = self._buf
        while buf and not self._skip_to_lf:
            i = 0
            while i < len(buf) and buf[i] in _SEPARATORS:
                i += 1
            if i:
                del buf[:i]
                continue
            first = buf[0]
            if 0x31 <= first <= 0x39:  # octet counting: NONZERO-DIGIT *DIGIT SP
                sp = buf.find(b" ", 0, MAX_LEN_DIGITS + 1)
                digits = bytes(buf[: sp if sp >= 0 else MAX_LEN_DIGITS + 1])
                if not digits.isdigit():  # decided on the octets seen, so any split gives the same error
                    return self._fail(out, Dropped(
                        FrameError.BAD_LENGTH, "malformed frame: MSG-LEN is not a number (RFC 5425 §4.3)"))
                if sp < 0:
                    if len(buf) > MAX_LEN_DIGITS:
                        return self._fail(out, Dropped(
                            FrameError.MISSING_SP, "malformed frame: MSG-LEN not followed by SP (RFC 5425 §4.3)"))
                    break  # more digits may follow
                length = int(digits)
                if length > self.max_frame:
                    if length > self.max_skip:
                        return self._fail(out, Dropped(
                            FrameError.ABSURD_LENGTH, f"frame length {length} is absurd (above {self.max_skip})",
                            length=length, framing="octet-counting"))
                    have = min(len(buf) - sp - 1, length)
                    del buf[: sp + 1 + have]
                    self._skip = length - have  # the rest is discarded as it arrives, never buffered
                    out.append(Dropped(FrameError.OVERSIZE,
                                       f"frame of {length} octets exceeds {self.max_frame}: dropped",
                                       length=length, framing="octet-counting"))
                    continue
                end = sp + 1 + length
                if len(buf) < end:
                    break
                out.append(Frame(bytes(buf[sp + 1 : end]), "octet-counting"))
                del buf[:end]
            elif first == 0x3C:  # '<' without a MSG-LEN: non-transparent framing, up to LF
                lf = buf.find(b"\n")
                if lf < 0:
                    if len(buf) > self.max_frame + 1:  # cannot end within max_frame (+ CR) any more
                        out.append(Dropped(FrameError.OVERSIZE,
                                           f"unframed message longer than {self.max_frame}: dropped",
                                           framing="non-transparent"))
                        buf.clear()
                        self._skip_to_lf = True
                    break
                end = lf
                while end > 0 and buf[end - 1] == _CR:
                    end -= 1
                if end > self.max_frame:
                    out.append(Dropped(FrameError.OVERSIZE,
                                       f"unframed message longer than {self.max_frame}: dropped",
                                       framing="non-transparent"))
                else:
                    out.append(Frame(bytes(buf[:end]), "non-transparent"))
                del buf[: lf + 1]
            elif first == 0x30:
                out.append(Dropped(FrameError.LEADING_ZERO,
                                   "malformed frame: MSG-LEN starts with 0 (RFC 5425 §4.3: NONZERO-DIGIT)"))
                self._discard_through_lf()
            else:
                out.append(Dropped(FrameError.BAD_START,
                                   f"malformed frame: starts with byte 0x{first:02x}, not a MSG-LEN or '<'"))
                self._discard_through_lf()
        return out
