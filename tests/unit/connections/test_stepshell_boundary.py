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
