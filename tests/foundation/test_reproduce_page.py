"""``docs/reproduce.md`` shows the protocols and published rows of the current code."""

from __future__ import annotations

from reproduce_page import BLOCKS, PAGE, render


def test_the_generated_tables_are_current():
    text = PAGE.read_text()
    for name in BLOCKS:
        assert f"<!-- {name}:" in text and f"<!-- /{name} -->" in text
    assert render(text) == text, "run: python tests/foundation/reproduce_page.py"
