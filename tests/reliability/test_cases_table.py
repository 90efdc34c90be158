"""The reliability table: every case's tests exist, every test is listed, the page is current."""

from __future__ import annotations

import re

from cases_table import CASES, PAGE, REL, REPO, UNKNOWN_TEST, render


def _defined(node: str) -> bool:
    path, *names = node.split("::")
    source = (REPO / path).read_text()
    return all(re.search(rf"^\s*(def|class) {name}\b", source, re.M) for name in names)


def test_every_listed_test_exists() -> None:
    nodes = [UNKNOWN_TEST, *(test for case in CASES for test in case.tests)]
    assert [node for node in nodes if not _defined(node)] == []


def test_every_reliability_test_is_listed() -> None:
    listed = {UNKNOWN_TEST, *(test for case in CASES for test in case.tests)}
    found = {
        f"{REL}/{path.name}::{name}"
        for path in (REPO / REL).glob("test_*.py")
        if path.name != "test_cases_table.py"
        for name in re.findall(r"^def (test_\w+)", path.read_text(), re.M)
    }
    assert found - listed == set()


def test_the_page_is_up_to_date() -> None:
    assert PAGE.is_file() and PAGE.read_text() == render(), (
        f"{PAGE.relative_to(REPO)} is out of date: run python {REL}/cases_table.py"
    )
