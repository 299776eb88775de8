"""The documentation stands on its own: links resolve, the README stays short, nothing points outside.

A newcomer clones the repository and reads README.md, then the guide under docs/. These tests keep
that path working without loading any model:

- every relative Markdown link or image in README.md and docs/**/*.md names a file that exists,
  and a ``#anchor`` on a link to a Markdown file names one of that file's headings (GitHub's
  slug rules);
- README.md has at most 200 lines;
- no user-facing file (README, docs, configs, requirements, the package, bench/, Makefile,
  pyproject.toml)
  mentions the sibling notes folder the project was developed beside, which a clone does not have.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The path a user-facing file must never contain (built so this file does not contain it either).
OUTSIDE = "../" + "shared"

#: ``[text](target)`` or ``![alt](target)``; the target ends at whitespace or ``)``.
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def markdown_files() -> list[Path]:
    """README.md and every Markdown file under docs/, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) for the lines outside fenced code blocks."""
    out, in_fence = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation and symbols dropped, spaces to '-'.

    Letters, marks, digits, '_', '-' and spaces survive (github-slugger's rule); inline Markdown
    (backticks, emphasis, link brackets) is punctuation and goes with the rest.
    """
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in " -_" or category[0] in "LMN" or category == "Pc":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link or image in prose that is not a URL."""
    out = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:, ...
                continue
            out.append((number, target))
    return out


def broken_links(path: Path) -> list[str]:
    """Problems with the relative links of one file, each as 'file:line: target (why)'."""
    problems = []
    for number, target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        if not resolved.exists():
            problems.append(f"{where} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{where} (no heading with anchor #{anchor})")
    return problems


def test_slug_follows_github_rules() -> None:
    assert slug("Training (DPO family + NLL, SFT)") == "training-dpo-family--nll-sft"
    assert slug("16. `compare-science`, seeds 1–2 pooled") == "16-compare-science-seeds-12-pooled"
    assert slug("Which domain for which model") == "which-domain-for-which-model"


def test_broken_links_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself finds a missing file and a missing anchor (so the real test can fail)."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "other.md").write_text("# Title\n\n## A section\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-section) [gone](missing.md) [bad](other.md#nowhere)\n"
        "```\n[in code](ignored.md)\n```\n[self](#here)\n\n## Here\n",
        encoding="utf-8",
    )
    problems = broken_links(page)
    assert problems == [
        "page.md:1: missing.md (no such file)",
        "page.md:1: other.md#nowhere (no heading with anchor #nowhere)",
    ]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    problems = broken_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the limit is 200 (move detail to docs/)"


def user_facing_files() -> list[Path]:
    """README, docs, configs, requirements, the package, bench/, Makefile, pyproject.toml (text files)."""
    files = [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml"]
    for folder in ("docs", "configs", "requirements", "src", "bench"):
        for path in sorted((ROOT / folder).rglob("*")):
            parts = set(path.relative_to(ROOT).parts)
            if path.is_file() and "__pycache__" not in parts and not any(p.endswith(".egg-info") for p in parts):
                files.append(path)
    return [path for path in files if path.exists()]


def test_nothing_points_outside_the_repository() -> None:
    offenders = []
    for path in user_facing_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # images and other binary files
            continue
        lines = [str(n) for n, line in enumerate(text.splitlines(), start=1) if OUTSIDE in line]
        if lines:
            offenders.append(f"{path.relative_to(ROOT)} (line {', '.join(lines)})")
    assert not offenders, f"user-facing files refer to {OUTSIDE}; say it in docs/ instead:\n" + "\n".join(offenders)
