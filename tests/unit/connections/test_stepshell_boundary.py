"""The step shell's end-mark finder, fed the ways a channel can split a stream."""

from __future__ import annotations

import pytest

from runner.connections.stepshell import Boundary

MARK = b"\ntoken-1234 "


def feed_all(chunks: list[bytes]) -> tuple[bytes, Boundary]:
    boundary = Boundary(MARK)
    forwarded = b"".join(boundary.feed(chunk) for chunk in chunks)
    return forwarded, boundary


@pytest.mark.parametrize("output", [b"", b"abc", b"abc\n", b"\n\n", b"a\ntoken-12\nb\n"])
def test_output_before_the_mark_is_forwarded_exactly_however_it_is_split(output: bytes) -> None:
    stream = output + MARK + b"e 0\n"
    for cut in range(len(stream) + 1):
        for cut2 in range(cut, len(stream) + 1):
            forwarded, boundary = feed_all([stream[:cut], stream[cut:cut2], stream[cut2:]])
            assert boundary.found, (cut, cut2)
            assert forwarded == output, (cut, cut2)
            assert boundary.after == b"e 0\n"


def test_a_trailing_newline_is_held_until_more_comes() -> None:
    boundary = Boundary(MARK)
    assert boundary.feed(b"line\n") == b"line"
    assert boundary.feed(b"next") == b"\nnext"
    assert not boundary.found


def test_flush_hands_back_the_held_newline_and_the_mark_is_still_found() -> None:
    boundary = Boundary(MARK)
    assert boundary.feed(b"line\n") == b"line"
    assert boundary.flush() == b"\n"  # the stream went quiet: it was the step's newline
    assert boundary.feed(MARK + b"e 0\n") == b""
    assert boundary.found and boundary.after == b"e 0\n"


def test_flush_then_the_rest_of_a_split_mark_ends_the_stream() -> None:
    boundary = Boundary(MARK)
    assert boundary.feed(b"out" + MARK[:5]) == b"out"
    assert boundary.flush() == MARK[:5]
    assert boundary.feed(MARK[5:] + b"e 3\n") == b""
    assert boundary.found and boundary.after == b"e 3\n"


def test_text_resembling_the_mark_without_its_token_is_output() -> None:
    forwarded, boundary = feed_all([b"x\ntoken-1234", b"5 y\n", MARK, b"e 0\n"])
    assert forwarded == b"x\ntoken-12345 y\n"
    assert boundary.found


@pytest.mark.parametrize("quiet_polls", [1, 2, 5])
def test_the_mark_is_found_however_many_quiet_polls_pass_inside_it(quiet_polls: int) -> None:
    # Seen on a loaded host: the shell's newline came in one packet and the rest of its
    # mark a third of a second later, after several quiet polls; the mark went out as the
    # step's output and the step never ended.
    for cut in range(1, len(MARK)):
        boundary = Boundary(MARK)
        forwarded = boundary.feed(b"out" + MARK[:cut])
        for _ in range(quiet_polls):
            forwarded += boundary.flush()
        forwarded += boundary.feed(MARK[cut:] + b"e 0\n")
        assert boundary.found, cut
        assert boundary.after == b"e 0\n"
        assert forwarded == b"out" + MARK[:cut], cut  # only the flushed part was shown


def test_a_mark_arriving_a_byte_at_a_time_with_quiet_polls_between_is_found() -> None:
    boundary = Boundary(MARK)
    forwarded = boundary.feed(b"last line")
    for byte in MARK + b"e 7\n":
        forwarded += boundary.feed(bytes([byte]))
        forwarded += boundary.flush()
        forwarded += boundary.flush()
    assert boundary.found
    assert boundary.after == b"e 7\n"
    assert forwarded == b"last line" + MARK[:-1]  # what the quiet polls had shown


def test_a_flushed_start_that_turns_out_not_to_be_the_mark_is_output_once() -> None:
    boundary = Boundary(MARK)
    forwarded = boundary.feed(b"a\ntok")
    forwarded += boundary.flush() + boundary.flush()
    forwarded += boundary.feed(b"x more\n")
    forwarded += boundary.feed(MARK + b"e 0\n")
    assert forwarded == b"a\ntokx more\n"
    assert boundary.found and boundary.after == b"e 0\n"
