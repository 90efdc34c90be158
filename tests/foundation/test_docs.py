"""The documentation as a reader sees it: Markdown lists that render as lists, and pages that
name every method the package registers, with counts that match the registry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([*REPO.glob("docs/**/*.md"), REPO / "README.md", *REPO.glob("methods/*/README.md")])

ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+\S")  # a list item: "- x", "* x", "1. x"
FENCE = re.compile(r"^\s*(```|~~~)")
# lines a list may follow directly: a heading, an admonition or details title
OPENERS = re.compile(r"^\s*(?:#{1,6}\s|!!!|\?\?\?)")
NUMBERS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
# a count of baselines: "four anomalib baselines", "seven of anomalib's models", "6 baselines"
COUNT = re.compile(
    r"\b(?P<n>\d+|" + "|".join(NUMBERS) + r")\s+(?:(?:of\s+)?(?:the\s+)?"
    r"anomalib(?:'s)?\s+(?:baselines|models)|baselines)\b",
    re.IGNORECASE,
)


def glued_lists(text: str) -> list[int]:
    """Line numbers of list items that directly follow a paragraph line.

    Python-Markdown (MkDocs) needs a blank line between a paragraph and a list; without it the
    items render as one paragraph of " - " fragments. Fenced code, the indented options of a
    ``::: identifier`` (mkdocstrings) block and a page's YAML front matter are not Markdown and
    are skipped; a list may follow a heading or an admonition title directly, and a list's own
    continuation lines do not end it.
    """
    hits, fence, in_list, directive, previous = [], "", False, False, ""
    lines = text.splitlines()
    if lines[:1] == ["---"]:  # front matter (MkDocs page settings): blank it, keep the numbers
        end = lines.index("---", 1) + 1
        lines = [""] * end + lines[end:]
    for number, line in enumerate(lines, 1):
        opening = FENCE.match(line)
        if fence:
            if opening and opening.group(1) == fence:
                fence, line = "", ""  # what follows a code block starts a block of its own
        elif opening:
            fence = opening.group(1)
        elif line.startswith(":::") or (directive and line[:1].isspace()):
            directive = True
        elif line.strip():
            directive = False
            if ITEM.match(line):
                if previous.strip() and not in_list and not OPENERS.match(previous):
                    hits.append(number)
                in_list = True
            elif not previous.strip() and not line[:1].isspace():
                in_list = False  # a new top-level block after a blank line
        else:
            directive = False
        previous = line
    return hits


def test_the_glued_list_check_finds_what_renders_as_a_paragraph():
    assert glued_lists("What the study says:\n- first\n- second\n") == [2]
    assert glued_lists("Steps\n1. build\n2. run\n") == [2]
    fine = "\n".join(
        [
            "---",
            "hide:",
            "  - toc",
            "---",  # front matter
            "# Title",
            "- item",
            "",  # after a heading
            "Text:",
            "",
            "- item that wraps",
            "  onto a second line",
            "- next",
            "",
            "```",
            "code",
            "- not a list",
            "```",
            "",
            "!!! note",
            "    - item",
            "",  # after an admonition title
            "::: adbench.create",
            "    options:",
            "      members:",
            "        - forward",
            "",
        ]
    )
    assert glued_lists(fine) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_lists_are_separated_from_the_paragraph_above(page):
    hits = glued_lists(page.read_text())
    assert not hits, (
        f"{page.relative_to(REPO)}: list items at lines {hits} follow a paragraph "
        "line directly; add a blank line before the list"
    )


def _shipped_methods() -> list[str]:
    """The methods this distribution registers (its ``adbench.methods`` entry points)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return sorted(project["entry-points"]["adbench.methods"])


def _display_names() -> dict[str, str]:
    """Registry name -> the name the docs use, from the table of the methods page."""
    rows = re.findall(
        r"^\| `([\w.]+)` \| \[([^\]]+)\]",
        (REPO / "docs" / "methods" / "index.md").read_text(),
        flags=re.MULTILINE,
    )
    return dict(rows)


def _methods_bullet(page: Path) -> str:
    """The "**Methods**" item of a page's feature list, on one line."""
    match = re.search(
        r"^- \*\*Methods\*\*.*?(?=^- |^$)", page.read_text(), flags=re.MULTILINE | re.DOTALL
    )
    assert match, f"{page.relative_to(REPO)} has no '- **Methods**' item"
    return " ".join(match.group(0).split())


def test_the_registry_is_the_one_the_package_installs():
    import adbench

    assert set(_shipped_methods()) <= set(adbench.list_methods())


def test_the_methods_page_lists_every_registered_method():
    assert sorted(_display_names()) == _shipped_methods()


@pytest.mark.parametrize("page", ["docs/index.md", "README.md"])
def test_the_feature_list_names_every_registered_method(page):
    bullet = _methods_bullet(REPO / page)
    missing = [
        f"{display} ({name})" for name, display in _display_names().items() if display not in bullet
    ]
    assert not missing, f"{page}: the Methods item does not name {', '.join(missing)}"


def test_the_count_check_reads_counts_in_words_and_digits():
    counts = [
        m.group("n")
        for m in COUNT.finditer(
            "plus four anomalib baselines; runs seven of anomalib's models as baselines; "
            "6 baselines"
        )
    ]
    assert counts == ["four", "seven", "6"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_counts_of_baselines_match_the_registry(page):
    anomalib = sum(name.startswith("anomalib.") for name in _shipped_methods())
    prose = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", page.read_text())  # links -> their text
    prose = " ".join(prose.split())
    wrong = [
        m.group(0)
        for m in COUNT.finditer(prose)
        if NUMBERS.get(m.group("n").lower(), None) != anomalib and m.group("n") != str(anomalib)
    ]
    assert not wrong, (
        f"{page.relative_to(REPO)}: {wrong} but the registry has {anomalib} anomalib baselines"
    )
