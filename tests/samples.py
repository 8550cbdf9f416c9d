"""The code blocks of README.md and docs/*.md, with what tests/test_samples.py does to each.

A block's mode comes from an HTML comment on the line just before its fence::

    <!-- sample: run -->                 run it (the default for python and bash blocks)
    <!-- sample: until-sigterm -->       run it until it is up (a pool: "Pool started"), then
                                         SIGTERM it: it must stop cleanly with status 0
    <!-- sample: file=PATH -->           a file of the page's project (see docs/backends.md);
    <!-- sample: append=PATH -->         the project's tests run with pytest
    <!-- sample: excerpt=PATH -->        an excerpt of a file (an example that is itself run)
    <!-- sample: schedules=MODULE:POOL -->  a schedule file: `agentexec schedules list` loads it
    <!-- sample: tested-by=PATH contains="TEXT" -->  run by another test (or CI), which says TEXT

``text`` blocks are diagrams and listings, not code; any other block must have a language.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"python", "bash"}
MODES = {"run", "until-sigterm", "file", "append", "excerpt", "schedules", "tested-by"}

_FENCE = re.compile(r"^```([\w+-]*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*sample:\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def mode(self) -> str:
        given = [key for key in self.options if key in MODES]
        if given:
            return given[0]
        if self.language in RUNNABLE:
            return "run"
        return "text" if self.language == "text" else ""


def parse_options(text: str) -> dict[str, str]:
    options = {}
    for token in shlex.split(text):
        key, _, value = token.partition("=")
        options[key] = value
    return options


def blocks(page: Path) -> list[Block]:
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start = i
        i += 1
        body = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        directive = _DIRECTIVE.match(lines[start - 1]) if start > 0 else None
        found.append(Block(
            page, start + 1, match.group(1), "\n".join(body) + "\n",
            parse_options(directive.group(1)) if directive else {},
        ))
        i += 1
    return found


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in blocks(page)]


def relative_links(page: Path) -> list[str]:
    """Targets of the page's markdown links that are paths in the repository."""
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
