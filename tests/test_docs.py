"""The documentation stays valid: the MkDocs site builds strictly and the README's links resolve.

``mkdocs build --strict`` with the ``validation`` settings of ``mkdocs.yml`` fails on a link to a
missing page or file, an unknown anchor, a link out of ``docs/`` and a page missing from the nav.
MkDocs does not read the README, so its relative links are checked here, anchors into ``docs/``
pages included.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 180  # the README keeps what a newcomer needs first; the rest goes to docs/

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def markdown_links(text: str) -> list[str]:
    """Link and image targets of a Markdown text, code blocks and code spans left out."""
    text = CODE_SPAN.sub("", FENCE.sub("", text))
    return INLINE_LINK.findall(text) + REFERENCE_DEF.findall(text)


def anchors(path: Path) -> set[str]:
    """Heading anchors of a Markdown file, slugged as MkDocs' toc extension (and GitHub) does."""
    headings = HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8")))
    return {slugify(CODE_SPAN.sub(lambda m: m.group(0).strip("`"), h), "-") for h in headings}


def test_mkdocs_build_is_strictly_clean(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "index.html").is_file()


def test_readme_relative_links_resolve() -> None:
    links = markdown_links(README.read_text(encoding="utf-8"))
    assert links, "no links found in README.md: the link pattern is broken"
    broken = []
    for link in links:
        if SCHEME.match(link):  # https:, mailto:, ...
            continue
        target, _, fragment = link.partition("#")
        path = (ROOT / target).resolve() if target else README
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"{link}: no heading with anchor #{fragment} in {path.relative_to(ROOT)}")
    assert not broken, "broken links in README.md:\n" + "\n".join(broken)


def test_link_checker_sees_every_kind_of_link() -> None:
    text = ("[a](docs/a.md) ![b](docs/b.png) [c](docs/c.md#sec \"title\")\n[d]: docs/d.md\n"
            "`[e](not/a/link.md)`\n```\n[f](not/a/link.md)\n```\n")
    assert markdown_links(text) == ["docs/a.md", "docs/b.png", "docs/c.md#sec", "docs/d.md"]


def test_readme_stays_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, (f"README.md has {lines} lines (at most {MAX_README_LINES}): "
                                       "move reference material to a page in docs/")
