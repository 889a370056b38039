"""Parse a model's answer into edits and apply them to the editable files.

An answer is a ``Description: ...`` line plus either

- one or more SEARCH/REPLACE blocks::

      train.py
      <<<<<<< SEARCH
      lr = 0.02
      =======
      lr = 0.03
      >>>>>>> REPLACE

  (the path line may be omitted when exactly one file is editable), or
- a whole file in one fenced code block (path on the line before the fence,
  or omitted when one file is editable).

Nothing here touches the disk: ``apply_edits`` works on a ``{path: text}``
mapping so a partly-failing answer never leaves a half-edited worktree. Every
failure is a plain string meant to be shown to the model verbatim, so it can
fix exactly that block on a retry; no block is ever skipped silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from autoresearch.workspace import matches

_SEARCH = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")
# "Description: x", "**Description:** x", "## Description: x", "- description: x"
_DESCRIPTION = re.compile(r"^[\s#*_>-]*description[\s*_]*:[\s*_]*(.*?)[\s*_]*$", re.IGNORECASE)


@dataclass(frozen=True)
class Edit:
    """Replace ``search`` by ``replace`` in ``path``; ``whole`` means ``replace`` is the file."""

    path: str
    search: str
    replace: str
    whole: bool = False


@dataclass(frozen=True)
class Parsed:
    description: str
    edits: tuple[Edit, ...] = ()
    errors: tuple[str, ...] = ()  # why the answer (or some block of it) could not be read


@dataclass(frozen=True)
class Applied:
    files: dict[str, str]  # the full new content of every file, edited or not
    changed: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())  # e.g. "block 2 matched ignoring indentation"


# ---------------------------------------------------------------- paths


def is_editable(path: str, editable: Iterable[str]) -> bool:
    """True when ``path`` (relative, posix) falls under one of the editable globs."""
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        return False
    return matches(str(p), [str(PurePosixPath(g)) for g in editable])


def _clean_path(line: str) -> str:
    # Models decorate path lines: `train.py`, **train.py**, "File: train.py", "# train.py:".
    s = line.strip().strip("`*_'\" ").rstrip(":").strip()
    s = re.sub(r"^(?:#+\s*|file(?:name)?\s*:\s*|path\s*:\s*)", "", s, flags=re.IGNORECASE)
    s = s.strip("`*_'\" ")
    return s[2:] if s.startswith("./") else s


def _looks_like_path(s: str) -> bool:
    return bool(s) and " " not in s and len(s) < 200 and not s.startswith(("<", "=", ">"))


# ---------------------------------------------------------------- parsing


def parse_answer(text: str, files: Mapping[str, str], editable: Iterable[str]) -> Parsed:
    """Read an answer. ``files`` are the known editable files (used to default the path)."""
    lines = text.splitlines()
    description = _description(lines)
    blocks = [i for i, line in enumerate(lines) if _SEARCH.match(line)]
    if blocks:
        edits, errors = _parse_blocks(lines, blocks, files)
    else:
        edits, errors = _parse_whole_file(lines, files)
    patterns = list(editable)
    # Out-of-scope edits are dropped here, not just reported: a later, otherwise good
    # retry must not carry them into the worktree.
    errors += _scope_errors(edits, patterns)
    edits = [e for e in edits if is_editable(e.path, patterns)]
    return Parsed(description=description, edits=tuple(edits), errors=tuple(errors))


def _description(lines: list[str]) -> str:
    in_fence = False
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        m = _DESCRIPTION.match(line)
        if m and not in_fence and m.group(1).strip():
            return " ".join(m.group(1).split())[:500]
    return ""


def fallback_description(text: str) -> str:
    """For an answer that forgot its ``Description:`` line: its first line of prose."""
    in_fence = in_block = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        elif _SEARCH.match(line):
            in_block = True
        elif _REPLACE.match(line):
            in_block = False
        elif not (in_fence or in_block) and len(line.split()) > 2:
            return " ".join(line.strip(" #*-").split())[:200]
    return ""


def _default_path(files: Mapping[str, str]) -> str | None:
    return next(iter(files)) if len(files) == 1 else None


def _path_before(lines: list[str], start: int, stop: int, known: Mapping[str, str]) -> str | None:
    """The path line right above line ``start`` (skipping blanks and fences), if any."""
    i = start - 1
    while i > stop and (not lines[i].strip() or _FENCE.match(lines[i])):
        i -= 1
    if i <= stop:
        return None
    candidate = _clean_path(lines[i])
    if candidate in known:
        return candidate
    # An unknown name is still taken as a path when it looks like one, so that an edit to a
    # non-editable file is refused by name instead of landing in the wrong file.
    plausible = _looks_like_path(candidate) and ("." in candidate or "/" in candidate)
    return candidate if plausible and not candidate.endswith(".") else None


def _parse_blocks(lines: list[str], starts: list[int],
                  files: Mapping[str, str]) -> tuple[list[Edit], list[str]]:
    edits: list[Edit] = []
    errors: list[str] = []
    prev_end = -1
    last_path: str | None = None
    for n, start in enumerate(starts, 1):
        if start <= prev_end:
            continue
        divider = next((j for j in range(start + 1, len(lines)) if _DIVIDER.match(lines[j])), None)
        end = None if divider is None else next(
            (j for j in range(divider + 1, len(lines)) if _REPLACE.match(lines[j])), None)
        if divider is None or end is None:
            errors.append(f"Block {n} is not closed: each block needs `<<<<<<< SEARCH`, the old "
                          "lines, `=======`, the new lines, then `>>>>>>> REPLACE`.")
            break
        nested = [j for j in range(start + 1, end) if _SEARCH.match(lines[j])]
        if nested:
            errors.append(f"Block {n} contains another `<<<<<<< SEARCH` before its "
                          "`>>>>>>> REPLACE`; close each block before starting the next.")
            break
        path = _path_before(lines, start, prev_end, files) or last_path or _default_path(files)
        if path is None:
            errors.append(f"Block {n} has no file path. Put the path (one of: "
                          f"{', '.join(files)}) alone on the line before `<<<<<<< SEARCH`.")
        else:
            search = "\n".join(lines[start + 1:divider])
            replace = "\n".join(lines[divider + 1:end])
            edits.append(Edit(path, search + "\n" if search else "",
                              replace + "\n" if replace else ""))
            last_path = path
        prev_end = end
    return edits, errors


def _parse_whole_file(lines: list[str],
                      files: Mapping[str, str]) -> tuple[list[Edit], list[str]]:
    fences: list[tuple[int, int]] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m:
            close = next((j for j in range(i + 1, len(lines))
                          if lines[j].strip() == m.group(1)), None)
            if close is None:
                return [], ["A fenced code block is never closed; end it with "
                            f"`{m.group(1)}` on its own line."]
            fences.append((i, close))
            i = close + 1
        else:
            i += 1
    if not fences:
        return [], ["The answer contains no edit. Give SEARCH/REPLACE blocks "
                    "(`<<<<<<< SEARCH` ... `=======` ... `>>>>>>> REPLACE`) or the whole "
                    "file in one fenced code block."]
    if len(fences) > 1:
        return [], [f"The answer has {len(fences)} code blocks and no SEARCH/REPLACE block. "
                    "Give either SEARCH/REPLACE blocks or exactly one fenced block holding "
                    "a whole file."]
    start, end = fences[0]
    info = _FENCE.match(lines[start])
    info_words = info.group(2).split() if info else []
    # ```python train.py  names the file in the info string; accept it too.
    from_info = next((_clean_path(w) for w in info_words if _clean_path(w) in files), None)
    path = from_info or _path_before(lines, start, -1, files) or _default_path(files)
    if path is None:
        return [], ["The whole-file answer does not say which file it is. Put the path (one of: "
                    f"{', '.join(files)}) alone on the line before the code block."]
    body = "\n".join(lines[start + 1:end])
    return [Edit(path, "", body + "\n" if body else "", whole=True)], []


def _scope_errors(edits: Iterable[Edit], editable: Iterable[str]) -> list[str]:
    patterns = list(editable)
    return [f"`{e.path}` is not editable; only files matching {', '.join(patterns)} may change."
            for e in edits if not is_editable(e.path, patterns)]


# ---------------------------------------------------------------- applying


def apply_edits(files: Mapping[str, str], edits: Iterable[Edit]) -> Applied:
    """Apply edits in order to an in-memory copy. Failing blocks are reported, never skipped
    silently; the blocks that did apply are kept in ``files`` so a retry only resends the rest."""
    out = dict(files)
    changed: list[str] = []
    errors: list[str] = []
    notes: list[str] = []
    for n, e in enumerate(edits, 1):
        if e.whole:
            new = e.replace
        else:
            if e.path not in out and e.search.strip():
                errors.append(f"Block {n}: `{e.path}` does not exist, so its SEARCH text cannot "
                              "match. Use an empty SEARCH section to create a new file.")
                continue
            new, problem, note = _replace(out.get(e.path, ""), e.search, e.replace)
            if problem:
                errors.append(f"Block {n} ({e.path}): {problem}")
                continue
            if note:
                notes.append(f"Block {n} ({e.path}) {note}.")
        if out.get(e.path) != new:
            out[e.path] = new
            if e.path not in changed:
                changed.append(e.path)
    return Applied(out, tuple(changed), tuple(errors), tuple(notes))


def _replace(text: str, search: str, replace: str) -> tuple[str, str | None, str | None]:
    """Returns (new text, problem, note). Exact match first, then whitespace-tolerant."""
    if not search.strip():
        if text.strip():
            return text, ("the SEARCH section is empty but the file is not; copy the exact "
                          "lines to change into SEARCH."), None
        return replace, None, None
    count = text.count(search)
    if count == 1:
        return text.replace(search, replace, 1), None, None
    if count > 1:
        return text, (f"the SEARCH text matches {count} places; add surrounding lines so it "
                      "matches exactly one."), None
    return _fuzzy_replace(text, search, replace)


def _fuzzy_replace(text: str, search: str, replace: str) -> tuple[str, str | None, str | None]:
    # Models often drop trailing spaces or shift a whole block's indentation. Match line by
    # line on stripped text (blank lines must still line up), then re-indent the replacement
    # by the offset seen on the first non-blank line.
    file_lines = text.splitlines(keepends=True)
    want = [s.strip() for s in search.splitlines()]
    while want and not want[-1]:
        want.pop()
    while want and not want[0]:
        want.pop(0)
    if not want:
        return text, "the SEARCH section has only blank lines.", None
    have = [s.strip() for s in file_lines]
    hits = [i for i in range(len(have) - len(want) + 1) if have[i:i + len(want)] == want]
    if not hits:
        return text, (f"the SEARCH text does not match the file (not even ignoring whitespace). "
                      f"The first SEARCH line was {_first(search)!r}; copy the lines exactly as "
                      "they are in the current file shown above."), None
    if len(hits) > 1:
        return text, (f"the SEARCH text matches {len(hits)} places (ignoring whitespace); add "
                      "surrounding lines so it matches exactly one."), None
    at = hits[0]
    old_first = next(s for s in search.splitlines() if s.strip())
    new_first = file_lines[at]
    indent_old = old_first[: len(old_first) - len(old_first.lstrip())]
    indent_new = new_first[: len(new_first) - len(new_first.lstrip())]
    body = []
    for line in replace.splitlines():
        if line.strip() and line.startswith(indent_old):
            line = indent_new + line[len(indent_old):]
        body.append(line + "\n")
    tail = file_lines[at + len(want):]
    newline_at_end = not file_lines[at + len(want) - 1].endswith("\n")
    new = "".join(file_lines[:at] + body + tail)
    if newline_at_end and not tail and new.endswith("\n"):
        new = new[:-1]
    return new, None, "matched only after ignoring whitespace"


def _first(search: str) -> str:
    return next((s for s in search.splitlines() if s.strip()), "")[:120]
