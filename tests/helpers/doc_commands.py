"""The docs' command blocks, for the tests that run them (runbooks: tests/rules/test_runbook_commands.py; the
guides: tests/integration/test_guide_commands.py): every ```console fence of a page, also indented ones inside
list items, with the headings it sits under and the `<!-- docs-test: ... -->` marker just before it, and the one
check of a command's output for an error reply."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

# An error reply of valkey-cli/redis-cli (they exit 0 on most of them), or no server to talk to.
ERROR_REPLY = re.compile(r"^(\(error\) )?(ERR|NOPERM|WRONGPASS|NOAUTH|WRONGTYPE|NOREPLICAS|LOADING|NOGOODSLAVE|"
                         r"NOQUORUM)\b|^Could not connect", re.M)
MARKER = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->")


@dataclass(frozen=True)
class Block:
    page: str  # file name, e.g. operations.md
    headings: tuple[str, ...]  # the headings it sits under, outermost first
    index: int  # 1-based, among the blocks of its innermost section
    text: str  # dedented, without the fences
    line: int  # of the opening fence
    marker: str = ""  # the text of a `<!-- docs-test: ... -->` comment on the line(s) just before it

    @property
    def section(self) -> str:
        return self.headings[-1] if self.headings else ""

    @property
    def key(self) -> str:
        """How lists name the block: `page § section [n]`."""
        return f"{self.page} § {self.section} [{self.index}]"


def console_blocks(path: Path) -> list[Block]:
    lines = Path(path).read_text().splitlines()
    blocks: list[Block] = []
    headings: list[tuple[int, str]] = []
    counts: dict[tuple, int] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        heading = re.match(r"^(#{1,6}) (.*)", line)
        fence = re.match(r"^(\s*)```console\s*$", line)
        if heading:
            level = len(heading.group(1))
            headings = [h for h in headings if h[0] < level] + [(level, heading.group(2).strip())]
        elif fence:
            indent = fence.group(1)
            end = next(j for j in range(i + 1, len(lines)) if lines[j].rstrip() == f"{indent}```")
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.search(before)
            names = tuple(h for _, h in headings)
            counts[names] = counts.get(names, 0) + 1
            blocks.append(Block(page=Path(path).name, headings=names, index=counts[names],
                                text=textwrap.dedent("\n".join(lines[i + 1:end])) + "\n", line=i + 1,
                                marker=marker.group(1) if marker else ""))
            i = end
        i += 1
    return blocks


def error_reply(output: str) -> bool:
    return bool(ERROR_REPLY.search(output))
