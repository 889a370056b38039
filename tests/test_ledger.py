"""The ledger survives a torn write and keeps the tsv view in step."""

from __future__ import annotations

import json
from pathlib import Path

from autoresearch.ledger import Experiment, Ledger


def exp(i: int, status: str = "discard", metric: float | None = 1.0) -> Experiment:
    return Experiment(id=i, status=status, description=f"idea\t{i}\nsecond line",
                      metric=metric, commit=f"{i:040x}", memory_gb=1.26)


def test_append_and_reload(tmp_path: Path) -> None:
    led = Ledger(tmp_path, "val_bpb")
    led.load()
    led.append(exp(0, "keep"))
    led.append(exp(1, "crash", None))
    again = Ledger(tmp_path, "val_bpb")
    assert again.load() == [exp(0, "keep"), exp(1, "crash", None)]
    assert again.next_id() == 2
    lines = (tmp_path / "results.tsv").read_text().splitlines()
    assert lines[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription"
    assert lines[1] == f"{0:07x}\t1.000000\t1.3\tkeep\tidea 0 second line"
    assert lines[2].split("\t")[1:4] == ["0.000000", "1.3", "crash"]  # Karpathy: 0 for a crash


def test_torn_last_line_is_skipped_then_overwritten(tmp_path: Path) -> None:
    led = Ledger(tmp_path, "m")
    led.load()
    led.append(exp(0, "keep"))
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('{"id": 1, "status": "disc')  # the harness died mid-write
    led2 = Ledger(tmp_path, "m")
    assert [e.id for e in led2.load()] == [0]
    led2.append(exp(1))
    raw = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in raw] == [0, 1]
    assert len((tmp_path / "results.tsv").read_text().splitlines()) == 3


def test_tsv_is_rebuilt_from_jsonl_when_out_of_step(tmp_path: Path) -> None:
    led = Ledger(tmp_path, "m")
    led.load()
    led.append(exp(0, "keep"))
    (tmp_path / "results.tsv").write_text("garbage\n")
    Ledger(tmp_path, "m").load()
    assert (tmp_path / "results.tsv").read_text().startswith("commit\tm\tmemory_gb")


def test_next_id_follows_the_largest_id_not_the_last_row(tmp_path: Path) -> None:
    # Parallel workers record decisions out of id order: 0, 2, 1. The next id is 3.
    ledger = Ledger(tmp_path, "val_loss")
    for i in (0, 2, 1):
        ledger.append(Experiment(id=i, status="discard", description=f"e{i}"))
    assert ledger.next_id() == 3
