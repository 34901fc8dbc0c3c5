"""The syslog stream deframer on its own (RFC 5425 §4.3 octet counting, RFC 6587 §3.4.2 LF framing):
frames split across feeds or packed in one, malformed MSG-LENs, oversize frames, bounded memory."""

from __future__ import annotations

import random

import pytest

from dcsaudit.auditmsg.build import octet_frame
from dcsaudit.auditmsg.framing import MAX_LEN_DIGITS, Deframer, Dropped, Frame, FrameError

MSG = b"<85>1 2024-01-01T00:00:00Z host app - - - hello"


def run(stream: bytes, chunks: list[int] | None = None, **kw: int) -> tuple[list[Frame | Dropped], Deframer]:
    """Feed ``stream`` in pieces of the given sizes (one piece if None); returns everything, close included."""
    d = Deframer(**kw)
    out: list[Frame | Dropped] = []
    pos = 0
    for n in chunks or [len(stream)]:
        out += d.feed(stream[pos : pos + n])
        pos += n
    out += d.feed(stream[pos:])
    end = d.close()
    return out + ([end] if end else []), d


def frames(items: list[Frame | Dropped]) -> list[bytes]:
    return [i.payload for i in items if isinstance(i, Frame)]


def errors(items: list[Frame | Dropped]) -> list[FrameError]:
    return [i.error for i in items if isinstance(i, Dropped)]


def test_octet_frame_round_trip_and_several_frames_in_one_feed() -> None:
    # Given three octet-counted frames, one of them holding spaces, LFs and a NUL
    msgs = [MSG, b"<85>1 - - - - - - a\nb c\x00", b"x"]
    # When they arrive in one feed
    out, d = run(b"".join(octet_frame(m) for m in msgs))
    # Then each comes out whole, in order, marked octet-counting, and nothing is left
    assert out == [Frame(m, "octet-counting") for m in msgs]
    assert d.buffered == 0 and d.failed is None


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_frames_split_across_feeds(size: int) -> None:
    # Given frames fed in small pieces that cut MSG-LEN, SP and body anywhere
    stream = octet_frame(MSG) + octet_frame(MSG * 3) + octet_frame(b"y")
    d = Deframer()
    out: list[Frame | Dropped] = []
    for i in range(0, len(stream), size):
        out += d.feed(stream[i : i + size])
    # Then the frames are the same as in one feed, and close finds no partial frame
    assert out == [Frame(MSG, "octet-counting"), Frame(MSG * 3, "octet-counting"), Frame(b"y", "octet-counting")]
    assert d.close() is None


def test_separators_between_frames_are_skipped_and_empty_input_yields_nothing() -> None:
    d = Deframer()
    assert d.feed(b"") == []
    assert d.feed(b"\r\n\x00\n") == [] and d.buffered == 0
    assert d.feed(octet_frame(MSG) + b"\n" + octet_frame(MSG) + b"\r\n\x00") == [Frame(MSG, "octet-counting")] * 2
    assert d.close() is None


def test_leading_zero_is_dropped_and_the_stream_resynchronises_at_lf() -> None:
    # Given "05 hello" (RFC 5425: MSG-LEN = NONZERO-DIGIT *DIGIT) then a good frame on the next line
    out, d = run(b"05 hello\n" + octet_frame(MSG))
    # Then the bad frame is dropped as LEADING_ZERO, not fatal, and the good one is kept
    assert errors(out) == [FrameError.LEADING_ZERO] and not FrameError.LEADING_ZERO.fatal
    assert frames(out) == [MSG] and d.failed is None


def test_zero_length_frame_is_a_leading_zero() -> None:
    out, _ = run(b"0 ")
    assert errors(out) == [FrameError.LEADING_ZERO] and frames(out) == []


@pytest.mark.parametrize("stream", [b"12abc " + MSG, b"1x", b"12\n<85>1 x\n"])
def test_non_digit_length_is_fatal_whatever_the_split(stream: bytes) -> None:
    for chunks in (None, [1] * len(stream), [2] * (len(stream) // 2)):
        out, d = run(stream + octet_frame(MSG), chunks)
        # Then one BAD_LENGTH, nothing after it (the stream is given up), nothing reported at close
        assert errors(out) == [FrameError.BAD_LENGTH] and frames(out) == []
        assert d.failed is FrameError.BAD_LENGTH and FrameError.BAD_LENGTH.fatal


def test_msg_len_without_sp_is_fatal_but_digits_may_arrive_one_by_one() -> None:
    # Given up to MAX_LEN_DIGITS digits: still waiting for the SP
    d = Deframer(max_skip=10**12)
    assert d.feed(b"1" * MAX_LEN_DIGITS) == [] and d.failed is None
    # When one more digit comes without an SP
    (dropped,) = d.feed(b"1")
    # Then the stream is given up
    assert isinstance(dropped, Dropped) and dropped.error is FrameError.MISSING_SP and d.failed is not None
    assert d.feed(octet_frame(MSG)) == [] and d.close() is None


def test_bad_start_is_dropped_through_the_next_lf() -> None:
    # Given garbage (no MSG-LEN, no '<') whose LF only comes in a later feed
    d = Deframer()
    (dropped,) = d.feed(b"\x00\x01garbage without newline")
    assert isinstance(dropped, Dropped) and dropped.error is FrameError.BAD_START and "0x01" in dropped.detail
    assert d.feed(b"more garbage " + octet_frame(MSG)) == []  # still before the LF
    # Then the frame after the LF is delivered
    assert d.feed(b"tail\n" + octet_frame(MSG)) == [Frame(MSG, "octet-counting")]


def test_oversize_octet_counted_frame_is_skipped_without_buffering() -> None:
    # Given max_frame 100 and a frame declaring 1000 octets, sent in 64-octet pieces, then a good frame
    stream = b"1000 " + b"z" * 1000 + octet_frame(MSG)
    d = Deframer(max_frame=100, max_skip=10_000)
    out: list[Frame | Dropped] = []
    for i in range(0, len(stream), 64):
        out += d.feed(stream[i : i + 64])
        assert d.buffered <= 100 + MAX_LEN_DIGITS + 1  # never the oversize body
    # Then one OVERSIZE with the declared length, and the next frame is intact
    (dropped, frame) = out
    assert isinstance(dropped, Dropped) and dropped.error is FrameError.OVERSIZE and not dropped.error.fatal
    assert dropped.length == 1000 and dropped.framing == "octet-counting"
    assert frame == Frame(MSG, "octet-counting")
    assert d.close() is None


def test_oversize_frame_whole_in_one_feed_keeps_what_follows() -> None:
    out, _ = run(b"200 " + b"z" * 200 + octet_frame(b"ok") + b"3 abc", max_frame=100, max_skip=1000)
    assert errors(out) == [FrameError.OVERSIZE] and frames(out) == [b"ok", b"abc"]


def test_frame_of_exactly_max_frame_is_kept() -> None:
    out, _ = run(octet_frame(b"m" * 100) + b"<1>" + b"n" * 97 + b"\r\n", max_frame=100)
    assert frames(out) == [b"m" * 100, b"<1>" + b"n" * 97] and errors(out) == []


def test_absurd_length_is_fatal() -> None:
    out, d = run(b"99999999999 " + b"x" * 100 + octet_frame(MSG), max_frame=100, max_skip=10_000)
    (dropped,) = out
    assert isinstance(dropped, Dropped) and dropped.error is FrameError.ABSURD_LENGTH
    assert dropped.length == 99999999999 and d.failed is FrameError.ABSURD_LENGTH


def test_lf_framing_is_accepted_and_marked_non_transparent() -> None:
    # Given RFC 6587 non-transparent framing, CRLF and LF, split inside a message
    stream = MSG + b"\r\n" + MSG + b"\n" + octet_frame(MSG)
    for chunks in (None, [5] * (len(stream) // 5)):
        out, _ = run(stream, chunks)
        # Then both LF-framed messages come out without their line ends, then the octet-counted one
        assert out == [Frame(MSG, "non-transparent"), Frame(MSG, "non-transparent"), Frame(MSG, "octet-counting")]


def test_oversize_lf_framed_message_is_dropped_through_its_lf() -> None:
    big = b"<85>" + b"w" * 500
    for chunks in (None, [64] * 20):
        # Given max_frame 100, a 504-octet LF-framed message, then a good one
        out, _ = run(big + b"\n" + MSG[:50] + b"\n", chunks, max_frame=100)
        # Then it is dropped as OVERSIZE (non-transparent) and the next message is kept
        assert errors(out) == [FrameError.OVERSIZE]
        assert [i.framing for i in out] == ["non-transparent", "non-transparent"]
        assert frames(out) == [MSG[:50]]


def test_end_of_stream_inside_a_frame_is_truncated() -> None:
    for partial in (b"10 abc", b"12", b"<85>1 no newline"):
        out, _ = run(partial)
        (dropped,) = out
        assert isinstance(dropped, Dropped) and dropped.error is FrameError.TRUNCATED
        assert dropped.length == len(partial)


def test_feed_after_close_is_refused() -> None:
    d = Deframer()
    d.close()
    with pytest.raises(ValueError):
        d.feed(b"1 x")
    with pytest.raises(ValueError):
        Deframer(max_frame=10, max_skip=5)


def test_any_split_gives_the_same_result_and_memory_stays_bounded() -> None:
    # Given a stream mixing every non-fatal case, and max_frame 64
    parts = [octet_frame(b"a" * 10), b"\r\n", b"100 " + b"o" * 100, MSG[:40] + b"\n", b"0 zero\n",
             b"\x7fjunk\n", b"<9>" + b"l" * 80 + b"\n", octet_frame(b"b" * 64), b"\x00", octet_frame(b"c"), b"7 tail"]
    stream = b"".join(parts)
    expected, _ = run(stream, max_frame=64, max_skip=1000)
    assert frames(expected) == [b"a" * 10, MSG[:40], b"b" * 64, b"c"]
    assert errors(expected) == [FrameError.OVERSIZE, FrameError.LEADING_ZERO, FrameError.BAD_START,
                                FrameError.OVERSIZE, FrameError.TRUNCATED]
    rng = random.Random(5425)
    for _ in range(200):
        # When it is cut at random points
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 40)))
        d = Deframer(max_frame=64, max_skip=1000)
        out: list[Frame | Dropped] = []
        for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            out += d.feed(stream[a:b])
            assert d.buffered <= 64 + MAX_LEN_DIGITS + 1
        end = d.close()
        # Then the result is the same
        assert out + ([end] if end else []) == expected
