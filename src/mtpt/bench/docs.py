"""``mtpt bench docs``: keep the tables pasted into a Markdown page identical to the files the benchmarks wrote.

A page marks each pasted block with a pair of HTML comments (invisible when rendered)::

    <!-- begin generated: ../benchmarks/results/speed/speed.md, headings: 4 -->
    ...replaced by the file's text...
    <!-- end generated -->

The path is relative to the page (as a Markdown link would be); ``headings: N`` demotes the file's headings to
level N so they nest under the page's sections. ``--check`` changes nothing and fails when a block is stale,
which is how the test suite keeps ``docs/results.md`` from drifting away from ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mtpt.errors import MtptError

BEGIN = re.compile(r"^<!-- begin generated: (?P<path>[^,>]+?)(?:, headings: (?P<level>[1-6]))? -->$")
END = "<!-- end generated -->"


def demote_headings(text: str, level: int | None) -> str:
    """Every Markdown heading of ``text`` at ``level`` (unchanged when ``level`` is None)."""
    if level is None:
        return text
    return "\n".join("#" * level + " " + line.lstrip("#").lstrip() if line.startswith("#") else line
                     for line in text.splitlines())


def render(page: Path, text: str | None = None) -> str:
    """The page's text (``text``, read from ``page`` when None) with every generated block refilled from its
    file; ``page`` also anchors the blocks' relative paths."""
    lines = (page.read_text(encoding="utf-8") if text is None else text).splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        match = BEGIN.match(lines[i].strip())
        i += 1
        if not match:
            continue
        end = _block_end(page, lines, i)
        source = (page.parent / match["path"].strip()).resolve()
        if not source.is_file():
            raise MtptError(f"{page}:{i}: generated block names {match['path']!r}, which does not exist "
                            f"(looked for {source}); run the benchmark that writes it or fix the path.")
        level = int(match["level"]) if match["level"] else None
        out.extend(demote_headings(source.read_text(encoding="utf-8").strip("\n"), level).splitlines())
        out.append(END)
        i = end + 1
    return "\n".join(out) + "\n"


def _block_end(page: Path, lines: list[str], start: int) -> int:
    for j in range(start, len(lines)):
        if BEGIN.match(lines[j].strip()):
            break
        if lines[j].strip() == END:
            return j
    raise MtptError(f"{page}:{start}: generated block has no {END!r} line before the next block or the end; add it.")


def refresh(page: Path, check: bool = False) -> bool:
    """Refill the page's generated blocks; returns True when they were stale. ``check`` writes nothing."""
    current = page.read_text(encoding="utf-8")
    text = render(page, current)
    stale = text != current
    if stale and not check:
        page.write_text(text, encoding="utf-8")
    return stale


def cmd_docs(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mtpt bench docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="+", type=Path, help="Markdown pages with generated blocks")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a block is stale")
    args = parser.parse_args(argv)
    stale = [page for page in args.pages if refresh(page, check=args.check)]
    for page in stale:
        print(f"{page}: {'stale (rerun without --check to refresh)' if args.check else 'refreshed'}")
    return 1 if args.check and stale else 0
