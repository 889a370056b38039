"""Reading a change's size and kind from its unified diff.

Two pure helpers the loop and the policies share:

- ``lines_delta(diff)``: non-blank, non-comment lines added minus removed. It is
  the simplicity criterion's measure: Karpathy's charter keeps an equal result
  bought by deleting code and refuses a tiny gain bought with ugly complexity.
  Comments and blank lines are free, so a proposer cannot game the count by
  deleting docs or pay for code with whitespace.
- ``is_seed_only(diff)``: true when every changed code line only touches a seed
  (``SEED = 42`` -> ``SEED = 137``, ``torch.manual_seed(0)``,
  ``random_state=7``). Such a change measures a different noise draw, not an
  idea; his first published run kept exactly this ("seed 42 -> 137").

Both read the hunks by their ``@@`` line counts rather than by ``+``/``-``
prefixes alone, so a removed line whose text starts with ``--`` is not taken
for a file header.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")

# Line-comment prefixes by file suffix. Unknown suffixes accept the common two;
# block comments are not tracked (a '*' continuation line is counted as code).
_COMMENT_PREFIXES: dict[str, tuple[str, ...]] = {
    ".py": ("#",), ".pyi": ("#",), ".sh": ("#",), ".toml": ("#",), ".yaml": ("#",),
    ".yml": ("#",), ".cfg": ("#", ";"), ".ini": ("#", ";"), ".r": ("#",), ".jl": ("#",),
    ".c": ("//",), ".h": ("//",), ".cc": ("//",), ".cpp": ("//",), ".cu": ("//",),
    ".rs": ("//",), ".go": ("//",), ".js": ("//",), ".ts": ("//",), ".java": ("//",),
    ".lua": ("--",), ".sql": ("--",),
}
_DEFAULT_PREFIXES = ("#", "//")

# An identifier that names a seed: seed, SEED, manual_seed, set_seed, np.random.seed,
# random_state, np.random.default_rng, jax.random.PRNGKey ... (case-insensitive,
# dotted paths allowed).
_SEED_NAME = r"(?:[A-Za-z_][\w.]*?)?(?:seed|random_state|randomstate|default_rng|prngkey)\w*"
_NUMBER = r"[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# The number a seed name is given: `SEED = 42`, `SEED: int = 42`, `seed=42`,
# `"seed": 42`, `manual_seed(42)`. Only that number is masked, so
# `build(seed=1, depth=8)` -> `depth=12` still reads as a real change.
_SEED_VALUE = re.compile(
    rf"(?P<name>\b(?:{_SEED_NAME})['\"]?\s*(?::\s*[\w.]+\s*)?(?:=|:|\()\s*)(?P<value>{_NUMBER})",
    re.IGNORECASE,
)
_MENTIONS_SEED = re.compile(rf"\b(?:{_SEED_NAME})\b", re.IGNORECASE)
# A whole statement that only seeds: `SEED = <N>`, `torch.manual_seed(<N>)`,
# `random.seed(SEED)`, `np.random.seed(cfg.seed)`. Added or removed on its own,
# it still only changes which noise draw the run gets.
_SEED_STATEMENT = re.compile(
    rf"^(?:{_SEED_NAME})\s*(?::\s*[\w.]+\s*)?(?:=\s*[\w.<>]+|\(\s*[\w.<>]*\s*\))\s*;?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FileChange:
    """The changed lines of one file in a unified diff (text without the +/- prefix)."""

    path: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def parse_diff(diff_text: str) -> list[FileChange]:
    """Split a unified diff (``git diff`` output, several files allowed) into changes."""
    changes: list[FileChange] = []
    current: FileChange | None = None
    old_path = ""
    old_left = new_left = 0  # lines still owed to the current hunk
    for line in diff_text.splitlines():
        if old_left > 0 or new_left > 0:
            if line.startswith("\\"):  # "\ No newline at end of file"
                continue
            tag, text = line[:1], line[1:]
            if current is None:  # a hunk with no file header: keep it anyway
                current = FileChange("")
                changes.append(current)
            if tag == "+":
                current.added.append(text)
                new_left -= 1
            elif tag == "-":
                current.removed.append(text)
                old_left -= 1
            else:  # context line (" " or an empty line from a stripped trailing space)
                old_left -= 1
                new_left -= 1
            continue
        if line.startswith("--- "):
            old_path = _header_path(line)
        elif line.startswith("+++ "):
            new_path = _header_path(line)
            # A deleted file's new side is /dev/null: name it by its old path.
            current = FileChange(old_path if new_path == "/dev/null" else new_path)
            changes.append(current)
        elif line.startswith("diff "):
            current = None
        elif (m := _HUNK.match(line)) is not None:
            old_left = int(m.group(1)) if m.group(1) is not None else 1
            new_left = int(m.group(2)) if m.group(2) is not None else 1
    return [c for c in changes if c.added or c.removed]


def _header_path(line: str) -> str:
    path = line[4:].split("\t")[0].strip()
    return path[2:] if path.startswith(("a/", "b/")) else path


def _prefixes(path: str) -> tuple[str, ...]:
    dot = path.rfind(".")
    return _COMMENT_PREFIXES.get(path[dot:].lower(), _DEFAULT_PREFIXES) if dot >= 0 \
        else _DEFAULT_PREFIXES


def is_code(line: str, path: str = "") -> bool:
    """True for a line that is neither blank nor a whole-line comment."""
    text = line.strip()
    return bool(text) and not text.startswith(_prefixes(path))


def _code_lines(lines: list[str], path: str) -> list[str]:
    return [line for line in lines if is_code(line, path)]


def lines_delta(diff_text: str) -> int:
    """Non-blank, non-comment lines added minus removed, over every file in the diff."""
    total = 0
    for change in parse_diff(diff_text):
        total += len(_code_lines(change.added, change.path))
        total -= len(_code_lines(change.removed, change.path))
    return total


def _strip_trailing_comment(line: str, path: str) -> str:
    # Good enough for seed lines: `SEED = 42  # was 1337`. A '#' inside a string on
    # a seed line is rare and only makes the check more conservative.
    for prefix in _prefixes(path):
        cut = line.find(prefix)
        if cut >= 0:
            line = line[:cut]
    return line.strip()


def _mask_seed_values(line: str) -> str:
    return _SEED_VALUE.sub(lambda m: m.group("name") + "<N>", line)


def is_seed_only(diff_text: str) -> bool:
    """True when the diff changes nothing but seed values or seed-only statements.

    A changed code line counts as seed-only when, after the numbers given to seed
    names are masked, it pairs with an identical line on the other side of the
    diff (``SEED = 42`` <-> ``SEED = 137``), or when on its own it is a bare
    seeding statement (``torch.manual_seed(3)`` added or removed). Comments and
    blank lines are ignored. An empty diff is not seed-only: there is no change.
    """
    changes = parse_diff(diff_text)
    seen_code = False
    for change in changes:
        removed = Counter(_mask_seed_values(_strip_trailing_comment(line, change.path))
                          for line in _code_lines(change.removed, change.path))
        added = Counter(_mask_seed_values(_strip_trailing_comment(line, change.path))
                        for line in _code_lines(change.added, change.path))
        if removed or added:
            seen_code = True
        paired = removed & added  # same line, seed values aside
        for line in (removed - paired) + (added - paired):
            if not (_MENTIONS_SEED.search(line) and _SEED_STATEMENT.match(line)):
                return False
        for line in paired:
            if not _MENTIONS_SEED.search(line):
                # Identical after masking yet not about seeds: a reordering or a
                # whitespace edit. Not a seed change, and not worth calling one.
                return False
    return seen_code
