"""Weights & Biases: one run per experiment, grouped under the tag, plus a run for the tag.

``[tracking] wandb = { project = "...", mode = "offline" }``. Run ids are deterministic
(``TAG-N`` for experiment N, ``TAG-tag`` for the tag's run), so a run made again after a
SIGKILL and resume is the same run to W&B (``resume = "allow"``), never a duplicate.
Offline runs are written under ``dir`` (default: ``.autoresearch/TAG/tracking``) and
uploaded later with ``wandb sync``. `read_offline` reads one back (tests, inspection).
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import Any

from autoresearch.ledger import Experiment
from autoresearch.tracking.base import Record, Setup, Tracker


def run_id(tag: str, suffix: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{tag}-{suffix}")[:64]


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, options: dict[str, Any]):
        self.options = options
        self.setup: Setup | None = None
        self.dir = Path()

    def open(self, setup: Setup) -> None:
        import wandb  # noqa: F401 - heavy: imported on the delivery thread, fails here if absent

        self.setup = setup
        given = self.options.get("dir")
        self.dir = (setup.root / given) if given else setup.state / "tracking"
        self.dir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")

    def _init(self, rid: str, name: str, job: str, config: dict[str, Any],
              tags: list[str]) -> Any:
        import wandb

        assert self.setup is not None
        return wandb.init(project=self.options["project"], entity=self.options.get("entity"),
                          mode=self.options.get("mode", "offline"), dir=str(self.dir), id=rid,
                          name=name, group=self.setup.tag, job_type=job, config=config,
                          tags=tags, resume="allow", reinit="create_new",
                          settings=wandb.Settings(console="off", save_code=False,
                                                  x_disable_stats=True))

    def finished(self, record: Record) -> None:
        e = record.exp
        assert self.setup is not None
        run = self._init(run_id(self.setup.tag, str(e.id)), f"{e.id}: {e.description[:60]}",
                         "experiment", dict(record.params), [e.status])
        try:
            run.log({**record.metrics, "experiment": e.id})
            for key, value in record.tags.items():
                run.summary[key] = value
            if record.patch:
                patch = self.dir / "patches" / f"{e.id}.diff"
                patch.parent.mkdir(parents=True, exist_ok=True)
                patch.write_text(record.patch)
                run.save(str(patch), base_path=str(patch.parent), policy="now")
            if record.log is not None:
                run.save(str(record.log), base_path=str(record.log.parent), policy="now")
        finally:
            run.finish(exit_code=0 if e.status in ("keep", "discard", "remeasure") else 1)

    def close(self, rows: list[Experiment]) -> None:
        assert self.setup is not None
        # The tag's run is written again only when the night moved on since: a resume that
        # ran nothing adds no second copy of it.
        marker = self.setup.state / "tracking" / "wandb.tag"
        if marker.exists() and marker.read_text().strip() == str(len(rows)):
            return
        kept = [e for e in rows if e.status == "keep" and e.metric is not None]
        run = self._init(run_id(self.setup.tag, "tag"), f"autoresearch/{self.setup.tag}",
                         "tag", dict(self.setup.config), ["tag"])
        try:
            run.summary["experiments"] = len(rows)
            if kept:
                run.summary[f"best_{self.setup.metric}"] = kept[-1].metric
                run.summary["kept"] = len(kept) - 1
        finally:
            run.finish()
        marker.write_text(f"{len(rows)}\n")


def _records(data: bytes) -> list[bytes]:
    """The records of a .wandb file: a LevelDB-style log (32 KiB blocks, 7-byte headers)
    after a 7-byte file header."""
    block, pos, out, part = 32768, 7, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            part = chunk
        elif kind == 3:
            part += chunk
        elif kind == 4:
            out.append(part + chunk)
    return out


def read_offline(run_dir: Path) -> dict[str, Any]:
    """An offline run's id, config, summary and saved files, read from its .wandb file."""
    from wandb.proto import wandb_internal_pb2

    pb: Any = wandb_internal_pb2  # generated protobuf code: its classes are not typed
    out: dict[str, Any] = {"id": "", "config": {}, "summary": {}, "files": []}
    for path in run_dir.glob("*.wandb"):
        for raw in _records(path.read_bytes()):
            rec = pb.Record()
            rec.ParseFromString(raw)
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                out["id"] = rec.run.run_id
                for item in rec.run.config.update:
                    out["config"][item.key] = json.loads(item.value_json)
            elif kind == "config":
                for item in rec.config.update:
                    out["config"][item.key] = json.loads(item.value_json)
            elif kind == "summary":
                for upd in rec.summary.update:
                    key = upd.key or ".".join(upd.nested_key)
                    out["summary"][key] = json.loads(upd.value_json)
            elif kind == "files":
                out["files"] += [f.path for f in rec.files.files]
    return out
