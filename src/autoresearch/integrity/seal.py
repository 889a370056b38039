"""Seals: how a resumed harness tells its own records from forged ones.

Everything in ``.autoresearch/TAG/`` is a plain file; a stat check catches a change made
while the harness watches, but not a same-size edit with its mtime put back between two
runs. So what the harness writes there is sealed with a key it keeps elsewhere:

- the key: 32 random bytes in ``<git dir>/autoresearch/keys/TAG.key`` (mode 0600), made
  when the tag's ledger or task pin is first written. Experiment phases run on exported
  trees and never see ``.git``, so they cannot read it. Whoever can (the user, a run
  without the sandbox) can forge a seal: this guards against experiments, not the user.
- every ``results.jsonl`` line carries ``seal`` = HMAC-SHA256(key, previous seal +
  canonical JSON of the record without its seal). An edit, insertion, deletion or
  reorder breaks the chain from that record on.
- ``TAG.head`` next to the key holds the record count and the last seal, so dropping
  the last records, which leaves a valid shorter chain, shows too.
- ``task.pin.json`` in the state directory pins the task file's bytes when a tag
  starts, so the rules an experiment is judged by cannot move under a resumed tag.

This module only reads and writes these files; `Ledger` and the CLI decide what a
failure means.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

PIN_NAME = "task.pin.json"
_PIN_DOMAIN = "task-pin"  # the chain's first "previous seal" is "": a pin seal never is one


def key_path(git_dir: Path, tag: str) -> Path:
    """Where tag `tag`'s key lives: in the repository's common git directory."""
    return git_dir / "autoresearch" / "keys" / f"{tag}.key"


def head_path(key: Path) -> Path:
    return key.with_suffix(".head")


def read_key(path: Path) -> bytes | None:
    """The key, or None when it is missing or not a key (both mean: nothing verifies)."""
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return key if len(key) == 32 else None


def make_key(path: Path) -> bytes:
    """The key at `path`, created (0600, exclusively) if there is none yet."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = read_key(path)
        if key is None:
            raise ValueError(f"{path} is not a key (expected 64 hex digits)") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key.hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return key


def canonical(record: dict[str, Any]) -> bytes:
    """The bytes a seal covers: one spelling of a JSON record, whatever wrote it."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def normalized(record: dict[str, Any]) -> dict[str, Any]:
    """`record` as it reads back from JSON (tuples become lists, int keys strings), so a
    seal made before writing matches the one computed from the line read back."""
    data: dict[str, Any] = json.loads(json.dumps(record))
    return data


def sign(key: bytes, previous: str, record: dict[str, Any]) -> str:
    return hmac.new(key, previous.encode() + canonical(record), hashlib.sha256).hexdigest()


def matches(key: bytes, previous: str, record: dict[str, Any], seal: object) -> bool:
    return isinstance(seal, str) and hmac.compare_digest(seal, sign(key, previous, record))


# -- head: how many records the harness wrote, and the last one's seal --------------------
@dataclass(frozen=True)
class Head:
    count: int
    seal: str


def read_head(path: Path) -> Head | None:
    try:
        data = json.loads(path.read_text())
        return Head(int(data["count"]), str(data["seal"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_head(path: Path, count: int, seal: str) -> None:
    # Written after the ledger line is fsync'd: a harness killed in between leaves a head
    # one record behind, which the ledger's own chain covers.
    tmp = path.with_suffix(".head.tmp")
    tmp.write_text(json.dumps({"count": count, "seal": seal}))
    os.replace(tmp, path)


# -- the task pin ----------------------------------------------------------------------
@dataclass(frozen=True)
class Pin:
    sha256: str
    text: str
    sealed: bool  # the seal verified under the tag's key


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_pin(path: Path, key: bytes | None) -> Pin | None:
    """The pinned task file, or None if there is no pin. `sealed` is False for a pin that
    does not verify (edited, unreadable, or its key missing)."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        body = {"sha256": str(data["sha256"]), "text": str(data["text"])}
    except (OSError, ValueError, KeyError, TypeError):
        return Pin("", "", False)
    ok = key is not None and matches(key, _PIN_DOMAIN, body, data.get("seal"))
    return Pin(body["sha256"], body["text"], ok and digest(body["text"].encode()) == body["sha256"])


def write_pin(path: Path, key: bytes, data: bytes) -> Pin:
    """Pin the task file whose bytes are `data` (UTF-8, as `load_task` read it)."""
    body = {"sha256": digest(data), "text": data.decode("utf-8")}
    tmp = path.with_suffix(".tmp")  # atomic: a torn pin would block every later start
    tmp.write_text(json.dumps({**body, "seal": sign(key, _PIN_DOMAIN, body)}, indent=1))
    os.replace(tmp, path)
    return Pin(body["sha256"], body["text"], True)


def changed_keys(old: str, new: str) -> list[str]:
    """What differs between two task files, by key: `time_budget`, `metric.name (added)`.
    Tables are followed one level down, where a task's keys live."""
    try:
        before, after = tomllib.loads(old), tomllib.loads(new)
    except tomllib.TOMLDecodeError:
        return ["(the pinned text is not TOML)"]
    out = []
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{name}.{k}" + _how(a, b, k) for k in sorted(a.keys() | b.keys())
                    if a.get(k) != b.get(k) or (k in a) != (k in b)]
        elif a != b or (name in before) != (name in after):
            out.append(name + _how(before, after, name))
    return out


def _how(before: dict[str, Any], after: dict[str, Any], key: str) -> str:
    return " (removed)" if key not in after else " (added)" if key not in before else ""


def set_aside(path: Path, stamp: str) -> Path | None:
    """Move `path` to `path.rejected-STAMP` (never deleted); None when there was none."""
    if not path.exists():
        return None
    dest = path.with_name(f"{path.name}.rejected-{stamp}")
    os.replace(path, dest)
    return dest
