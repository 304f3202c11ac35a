"""Reading the JUnit files that tests make `runner run --junit` write."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path


def parse_junit(path: str | Path) -> ET.Element:
    """The root of the JUnit file at `path`, read by xml.etree as a CI server reads it.

    A file that is not well formed (a control character, a bad escape) fails the test
    with the parser's line and column, rather than passing unread.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise AssertionError(f"{path} is not well-formed XML: {error}") from None
    assert root.tag == "testsuites", f"{path}: root element is <{root.tag}>"
    return root
