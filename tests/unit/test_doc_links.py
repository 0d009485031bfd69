"""The project's Markdown documents link only to files and headings that exist (a section moved or renamed
in the README must not leave a dead link in docs/ or deploy/)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted(
    [ROOT / "README.md"]
    + [p for folder in ("docs", "deploy", "benchmarks", "shop") for p in (ROOT / folder).rglob("*.md")]
)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but hyphens dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    """Every heading's anchor in a Markdown file, skipping fenced code (a '# comment' is no heading)."""
    found, seen, fenced = set(), {}, False
    for line in document.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            name = slug(line.lstrip("#"))
            count = seen.get(name, 0)
            seen[name] = count + 1
            found.add(name if count == 0 else f"{name}-{count}")
    return found


def test_the_slug_is_githubs():
    assert slug(" Sagas: flows over many events and time") == "sagas-flows-over-many-events-and-time"
    assert slug("Threads or `async def`") == "threads-or-async-def"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_local_link_resolves(document):
    dead = []
    for link in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+:", link):
            continue  # http(s), mailto: not checked here (no internet)
        path, _, fragment = link.partition("#")
        target = (document.parent / path).resolve() if path else document
        if not target.exists():
            dead.append(f"{link}: no such file")
        elif fragment and target.suffix == ".md" and fragment not in anchors(target):
            dead.append(f"{link}: no such heading in {target.relative_to(ROOT)}")
    assert dead == []
