"""A trust boundary that holds between runs: a sealed ledger, a pinned task, `rebuild`."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import git, make_repo, run_cli, toy_toml
from test_loop import STRICT, ledger

from autoresearch.integrity import seal
from autoresearch.integrity.rebuild import parse_message
from autoresearch.ledger import Experiment, Ledger, LedgerError

# Experiment 1 improves, 2 is worse (a discard to forge), 3 and on lengthen training.
PROPOSE = """#!/usr/bin/env python3
import os, pathlib, re
n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
p = pathlib.Path("train.py")
lr = {1: "0.05", 2: "0.001"}.get(n)
src = p.read_text()
if lr:
    src = re.sub(r"LEARNING_RATE = [0-9.]+", "LEARNING_RATE = " + lr, src)
else:
    src = re.sub(r"STEPS = [0-9]+", "STEPS = " + str(150 + 10 * n), src)
p.write_text(src)
print("learning rate " + lr if lr else "train longer")
"""


def exp(i: int, status: str = "discard") -> Experiment:
    return Experiment(id=i, status=status, description=f"idea {i}", metric=1.0 - i / 10,
                      commit=f"{i:040x}", evidence={"samples": (1.0, 2.0), 3: "int key"})


def sealed(tmp_path: Path, n: int = 4) -> tuple[Ledger, Path]:
    key = tmp_path / "git" / "autoresearch" / "keys" / "t.key"
    led = Ledger(tmp_path / "t", "m", key)
    led.load()
    for i in range(n):
        led.append(exp(i, "keep" if i == 0 else "discard"))
    return led, key


def task_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "r", files={"propose.py": PROPOSE}, toml=toy_toml(extra=STRICT))


def run(repo: Path, tag: str, *args: str) -> tuple[int, str]:
    res = run_cli(repo, "run", "--tag", tag, "--proposer", "command:./propose.py", *args)
    return res.returncode, " ".join(res.stderr.split())  # rich wraps long lines


def rewrite_keeping_stat(path: Path, lines: list[str]) -> None:
    """What a forger does between runs: same size, mtime put back."""
    before = path.stat()
    data = "".join(lines).encode()
    assert len(data) == before.st_size
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


# -- the seal chain, on the Ledger alone ---------------------------------------------------
def test_sealed_ledger_round_trips_and_key_is_private(tmp_path: Path) -> None:
    led, key = sealed(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    lines = (tmp_path / "t" / "results.jsonl").read_text().splitlines()
    assert all(len(json.loads(line)["seal"]) == 64 for line in lines)
    again = Ledger(tmp_path / "t", "m", key)
    # The seal is the line's, not the record's; records read back as JSON spells them.
    assert [e.to_json() for e in again.load()] == \
        [seal.normalized(e.to_json()) for e in led.experiments]
    assert again.verified
    again.append(exp(4))  # chains on the loaded last seal
    assert len(Ledger(tmp_path / "t", "m", key).load()) == 5
    assert len(Ledger(tmp_path / "t", "m").read()) == 5  # unkeyed: read as found


def _edit(lines: list[str]) -> list[str]:
    return [lines[0], lines[1].replace('"description": "idea 1"', '"description": "idea 9"'),
            *lines[2:]]


@pytest.mark.parametrize("mutate, where", [
    (_edit, "line 2 (experiment 1) does not verify"),
    (lambda ls: [ls[0], *ls[2:]], "line 2 (experiment 2) does not verify"),  # deleted
    (lambda ls: [ls[0], ls[2], ls[1], ls[3]], "line 2 (experiment 2) does not verify"),
    (lambda ls: [ls[0], ls[1], ls[1], *ls[2:]], "line 3 (experiment 1) does not verify"),
    (lambda ls: ls[:3], "ends at line 3 (experiment 2), but the harness wrote 4"),
    (lambda ls: [], "has no records, but the harness wrote 4"),
    (lambda ls: [ls[0], json.dumps({k: v for k, v in json.loads(ls[1]).items() if k != "seal"})
                 + "\n", *ls[2:]], "line 2 (experiment 1) has no seal"),
    (lambda ls: [json.dumps({k: v for k, v in json.loads(line).items() if k != "seal"}) + "\n"
                 for line in ls], "line 1 (experiment 0): the ledger predates sealing"),
])
def test_any_change_to_the_records_is_refused(tmp_path: Path, mutate, where: str) -> None:
    _, key = sealed(tmp_path)
    path = tmp_path / "t" / "results.jsonl"
    path.write_text("".join(mutate(path.read_text().splitlines(keepends=True))))
    before = path.read_bytes()
    with pytest.raises(LedgerError) as err:
        Ledger(tmp_path / "t", "m", key).load()
    assert where in str(err.value)
    assert "Nothing was adopted" in str(err.value)
    assert "`autoresearch rebuild --tag t`" in str(err.value)
    assert path.read_bytes() == before


def test_missing_key_is_refused_and_torn_tail_is_not(tmp_path: Path) -> None:
    _, key = sealed(tmp_path)
    path = tmp_path / "t" / "results.jsonl"
    with open(path, "a") as fh:
        fh.write('{"id": 4, "status": "disc')  # the harness died mid-write
    led = Ledger(tmp_path / "t", "m", key)
    assert [e.id for e in led.load()] == [0, 1, 2, 3]
    led.append(exp(4))  # the torn tail is dropped, the chain goes on
    assert [e.id for e in Ledger(tmp_path / "t", "m", key).load()] == [0, 1, 2, 3, 4]
    key.rename(key.with_name("elsewhere"))
    with pytest.raises(LedgerError, match=r"line 1 \(experiment 0\): the key .* is missing"):
        Ledger(tmp_path / "t", "m", key).load()


def test_intact_catches_a_same_size_edit_of_the_last_line(tmp_path: Path) -> None:
    led, _ = sealed(tmp_path)
    path = tmp_path / "t" / "results.jsonl"
    honest = path.read_bytes()
    lines = path.read_text().splitlines(keepends=True)
    lines[-1] = lines[-1].replace('"status": "discard"', '"status":    "keep"')
    rewrite_keeping_stat(path, lines)
    assert led.intact() is False
    assert path.read_bytes() == honest  # rewritten from the records held in memory
    assert led.intact() is True


def test_task_pin_and_key_diff(tmp_path: Path) -> None:
    key = seal.make_key(tmp_path / "k.key")
    pin = tmp_path / "task.pin.json"
    seal.write_pin(pin, key, b"a = 1\n")
    got = seal.read_pin(pin, key)
    assert got is not None and got.sealed and got.sha256 == seal.digest(b"a = 1\n")
    assert not seal.read_pin(pin, b"x" * 32).sealed  # type: ignore[union-attr]
    pin.write_text(pin.read_text().replace("a = 1", "a = 2"))
    assert not seal.read_pin(pin, key).sealed  # type: ignore[union-attr]
    assert seal.changed_keys('a = 1\nb = 2\n[m]\nx = 1\n', 'a = 1\nc = 3\n[m]\nx = 2\n') == \
        ["b (removed)", "c (added)", "m.x"]


def test_commit_messages_parse_back() -> None:
    msg = ("two\n\nparagraphs\n\nautoresearch: experiment 7 (tag t)\nstatus: discard\n"
           "val_loss: 0.123457\nreason: not better\n\n")
    got = parse_message(msg, "t")
    assert got is not None
    e, name = got
    assert (e.id, e.status, e.description, e.metric, e.reason, name) == \
        (7, "discard", "two\n\nparagraphs", 0.123457, "not better", "val_loss")
    assert parse_message(msg, "other") is None
    assert parse_message("initial\n", "t") is None


# -- the real CLI, between runs ------------------------------------------------------------
def test_forged_keep_is_refused_on_resume(tmp_path: Path) -> None:
    repo = task_repo(tmp_path)
    assert run(repo, "f", "--max-experiments", "2")[0] == 0
    rows = ledger(repo, "f")
    assert [r["status"] for r in rows] == ["keep", "keep", "discard"]
    path = repo / ".autoresearch" / "f" / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"status": "discard"', '"status":    "keep"')
    rewrite_keeping_stat(path, lines)
    forged = path.read_bytes()
    tip = git(repo, "rev-parse", "autoresearch/f")

    code, err = run(repo, "f", "--max-experiments", "4")
    assert code == 2
    assert "line 3 (experiment 2) does not verify" in err
    assert "Nothing was adopted" in err and "`autoresearch rebuild --tag f`" in err
    assert path.read_bytes() == forged and git(repo, "rev-parse", "autoresearch/f") == tip
    status = run_cli(repo, "status", "--tag", "f")  # still shown, with a warning
    assert status.returncode == 0 and "does not verify" in status.stderr
    assert "baseline" in status.stdout


def test_deleted_record_is_refused(tmp_path: Path) -> None:
    repo = task_repo(tmp_path)
    assert run(repo, "d", "--max-experiments", "2")[0] == 0
    path = repo / ".autoresearch" / "d" / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[2])
    code, err = run(repo, "d", "--max-experiments", "3")
    assert code == 2 and "line 2 (experiment 2) does not verify" in err
    path.write_text(lines[0] + lines[1])  # the last one: a shorter chain still holds
    code, err = run(repo, "d", "--max-experiments", "3")
    assert code == 2 and "but the harness wrote 3 records" in err


def test_rebuild_recovers_from_commits_and_run_resumes(tmp_path: Path) -> None:
    repo = task_repo(tmp_path)
    assert run(repo, "b", "--max-experiments", "3")[0] == 0
    honest = ledger(repo, "b")
    state = repo / ".autoresearch" / "b"
    lines = (state / "results.jsonl").read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"status": "discard"', '"status":    "keep"')
    rewrite_keeping_stat(state / "results.jsonl", lines)
    old_key = (repo / ".git" / "autoresearch" / "keys" / "b.key").read_text()

    res = run_cli(repo, "rebuild", "--tag", "b")
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stderr.split())
    assert f"Rebuilt {len(honest)} records" in out and "holdout scores" in out
    rejected = sorted(p.name for p in state.iterdir() if ".rejected-" in p.name)
    assert [n.split(".rejected-")[0] for n in rejected] == \
        ["results.jsonl", "results.tsv", "task.pin.json"]
    assert (state / rejected[0]).read_text() == "".join(lines)  # set aside, never deleted
    assert (repo / ".git" / "autoresearch" / "keys" / "b.key").read_text() != old_key
    rebuilt = ledger(repo, "b")
    fields = ("id", "status", "description", "commit", "parent")
    assert [[r[f] for f in fields] for r in rebuilt] == [[r[f] for f in fields] for r in honest]
    assert [round(r["metric"], 6) for r in honest] == [r["metric"] for r in rebuilt]
    assert all(r["evidence"] == {"rebuilt": True} for r in rebuilt)
    assert rebuilt[0]["proposer"] == "baseline"

    code, err = run(repo, "b", "--max-experiments", "4")
    assert code == 0, err
    rows = ledger(repo, "b")
    assert [r["id"] for r in rows] == list(range(len(honest) + 1))
    assert rows[:len(rebuilt)] == rebuilt
    again = run_cli(repo, "rebuild", "--tag", "b")  # a ledger that verifies is left alone
    assert again.returncode == 2 and "verifies" in again.stderr


def test_changed_task_is_refused_until_accepted(tmp_path: Path) -> None:
    repo = task_repo(tmp_path)
    assert run(repo, "p", "--max-experiments", "1")[0] == 0
    pin = json.loads((repo / ".autoresearch" / "p" / "task.pin.json").read_text())
    assert pin["text"] == (repo / "autoresearch.toml").read_text()
    assert run(repo, "p", "--max-experiments", "2", "--time-budget", "5")[0] == 0  # a flag
    toml = toy_toml(extra=STRICT, time_budget="5").replace("checks = []\n", "")
    (repo / "autoresearch.toml").write_text(toml)
    git(repo, "commit", "-qam", "shorter budget")

    code, err = run(repo, "p", "--max-experiments", "3")
    assert code == 2
    assert "autoresearch.toml changed since tag p started; changed: checks (removed), " \
           "time_budget" in err
    assert "--accept-task-change" in err
    assert len(ledger(repo, "p")) == 3  # nothing ran

    code, err = run(repo, "p", "--max-experiments", "3", "--accept-task-change")
    assert code == 0, err
    assert "accepted the change to autoresearch.toml (checks (removed), time_budget)" in err
    assert run(repo, "p", "--max-experiments", "4")[0] == 0  # pinned from now on
    assert len(ledger(repo, "p")) == 5


def test_tampered_pin_is_refused(tmp_path: Path) -> None:
    repo = task_repo(tmp_path)
    assert run(repo, "q", "--max-experiments", "0")[0] == 0
    pin_file = repo / ".autoresearch" / "q" / "task.pin.json"
    pin = json.loads(pin_file.read_text())
    (repo / "autoresearch.toml").write_text(pin["text"].replace("timeout = 60", "timeout = 99"))
    git(repo, "commit", "-qam", "longer timeout")
    data = (repo / "autoresearch.toml").read_bytes()
    pin_file.write_text(json.dumps({**pin, "sha256": seal.digest(data), "text": data.decode()}))
    code, err = run(repo, "q", "--max-experiments", "1")
    assert code == 2 and "task.pin.json does not verify" in err


def test_ledger_from_before_sealing_is_refused(tmp_path: Path) -> None:
    repo = task_repo(tmp_path)
    assert run(repo, "o", "--max-experiments", "1")[0] == 0
    path = repo / ".autoresearch" / "o" / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "seal"},
                                       sort_keys=True) + "\n" for r in rows))
    code, err = run(repo, "o", "--max-experiments", "2")
    assert code == 2 and "predates sealing" in err and "rebuild --tag o" in err
