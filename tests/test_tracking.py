"""Trackers: the hub's contract (order, never blocking, warn once, catch-up, no duplicates)
with real Tracker subclasses, and a real MLflow sqlite store and W&B offline files read back."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import git, make_repo

from autoresearch.ledger import Experiment, Ledger
from autoresearch.task import ConfigError, load_task
from autoresearch.tracking import Hub, Record, Setup, Started, Tracker, make_hub
from autoresearch.tracking.base import changed_constants


def _setup(repo: Path, tag: str = "t") -> Setup:
    state = repo / ".autoresearch" / tag
    state.mkdir(parents=True, exist_ok=True)
    return Setup(tag, "val_loss", "minimize", state, repo, {"time_budget": 10})


class Recorder(Tracker):
    name = "recorder"

    def __init__(self, gate: threading.Event | None = None):
        self.calls: list[str] = []
        self.gate = gate

    def open(self, setup: Setup) -> None:
        self.calls.append("open")

    def started(self, event: Started) -> None:
        self.calls.append(f"started {event.exp_id}")

    def finished(self, record: Record) -> None:
        if self.gate is not None:
            self.gate.wait()  # a tracker stuck on a slow network
        self.calls.append(f"finished {record.exp.id} {record.tags['status']}")

    def close(self, rows: list[Experiment]) -> None:
        self.calls.append(f"close {len(rows)}")


class Broken(Tracker):
    name = "broken"

    def finished(self, record: Record) -> None:
        raise ConnectionError("no route to host")


def test_hub_delivers_in_order_without_blocking_and_warns_once(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    setup = _setup(repo)
    gate = threading.Event()
    rec, said = Recorder(gate), []
    hub = Hub([rec, Broken()], setup, said.append).start()
    ledger = Ledger(setup.state, "val_loss")
    ledger.load()
    for i in range(3):
        hub.started(i, f"exp {i}", "", "")
        exp = Experiment(i, "keep" if i == 0 else "discard", f"exp {i}", 1.0 - i / 10)
        ledger.append(exp)
        hub.finished(exp)  # returns although the tracker is stuck
    assert not any(c.startswith("finished") for c in rec.calls)
    gate.set()
    hub.close()
    # Row 0 may come by catch-up (read from the ledger) or by its event: never twice.
    assert rec.calls[0] == "open" and rec.calls[-1] == "close 3"
    assert [c for c in rec.calls if c.startswith("finished")] == \
        ["finished 0 keep", "finished 1 discard", "finished 2 discard"]
    assert len(said) == 1 and "broken" in said[0] and "no route to host" in said[0]
    delivered = (setup.state / "tracking" / "recorder.delivered").read_text().split()
    assert delivered == ["0", "1", "2"]
    assert not (setup.state / "tracking" / "broken.delivered").exists()


def test_a_new_hub_catches_up_on_rows_a_killed_one_missed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    setup = _setup(repo)
    ledger = Ledger(setup.state, "val_loss")
    ledger.load()
    first = Recorder()
    hub = Hub([first], setup, print).start()
    ledger.append(Experiment(0, "keep", "baseline", 1.0))
    hub.finished(ledger.experiments[0])
    hub.close()
    ledger.append(Experiment(1, "discard", "a", 1.1))  # written; the loop died before delivery
    second = Recorder()
    Hub([second], setup, print).start().close()
    assert [c for c in second.calls if c.startswith("finished")] == ["finished 1 discard"]


def test_changed_constants_are_read_from_the_patch() -> None:
    patch = "--- a/t.py\n+++ b/t.py\n-LR = 0.1\n+LR = 0.2  # faster\n+STEPS=300\n+x = 1\n"
    assert changed_constants(patch) == {"LR": "0.2", "STEPS": "300"}


def test_tracking_table_is_validated_with_key_paths(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    toml = repo / "autoresearch.toml"
    base = toml.read_text()
    toml.write_text(base + '\n[tracking]\nwandb = { project = "p", colour = "red" }\n')
    with pytest.raises(ConfigError, match=r"tracking\.wandb\.colour: unknown key"):
        load_task(toml)
    toml.write_text(base + '\n[tracking]\nneptune = { project = "p" }\n')
    with pytest.raises(ConfigError, match=r"tracking\.neptune: unknown tracker"):
        load_task(toml)
    toml.write_text(base + '\n[tracking]\nmlflow = { experiment = "x" }\n')
    with pytest.raises(ConfigError, match=r"tracking\.mlflow\.tracking_uri: required"):
        load_task(toml)
    toml.write_text(base + '\n[tracking]\nmlflow = { tracking_uri = "sqlite:///m.db" }\n')
    assert load_task(toml).tracking == {"mlflow": {"tracking_uri": "sqlite:///m.db"}}
    toml.write_text(base)
    hub = make_hub(load_task(toml), tmp_path / "state", "t")
    hub.started(0, "x", "", "")  # no trackers: a no-op, no thread
    hub.close()


def _night(repo: Path, tag: str) -> tuple[Ledger, list[Experiment]]:
    """Three real experiments: commits that change a constant, logs, a kept holdout."""
    state = repo / ".autoresearch" / tag
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "train.py").write_text((repo / "train.py").read_text().replace(
        "LEARNING_RATE = 0.02", "LEARNING_RATE = 0.05"))
    git(repo, "commit", "-qam", "lr")
    c1 = git(repo, "rev-parse", "HEAD").strip()
    logs = state / "logs"
    logs.mkdir(parents=True)
    rows = []
    for i, (status, metric) in enumerate([("keep", 0.3), ("keep", 0.2), ("crash", None)]):
        log = logs / f"{i:04d}.log"
        log.write_text(f"log of experiment {i}\n")
        rows.append(Experiment(
            i, status, ["baseline", "raise LR", "broken"][i], metric,
            metrics={"num_steps": 150.0} if metric else {}, holdout=0.31 if i == 1 else None,
            reason=["baseline", "0.2 beats 0.3", "run exited with code 1\nTraceback"][i],
            commit=[base, c1, ""][i], parent=[base, base, c1][i], log=str(log),
            proposer="test", started=100.0 + i, finished=101.0 + i))
    ledger = Ledger(state, "val_loss")
    ledger.load()
    return ledger, rows


def _drive(repo: Path, tag: str, tracking: dict[str, dict[str, str]], ledger: Ledger,
           rows: list[Experiment]) -> None:
    from dataclasses import replace

    task = replace(load_task(repo / "autoresearch.toml"), tracking=tracking)
    hub = make_hub(task, ledger.dir, tag)
    for e in rows:
        hub.started(e.id, e.description, e.parent, "")
        ledger.append(e)
        hub.finished(e)
    hub.close()


@pytest.mark.slow
def test_mlflow_sqlite_store_reads_back_one_run_per_experiment(tmp_path: Path) -> None:
    pytest.importorskip("mlflow", reason="pip install '.[tracking]'")
    from mlflow.tracking import MlflowClient

    repo = make_repo(tmp_path / "repo")
    ledger, rows = _night(repo, "ml")
    tracking = {"mlflow": {"tracking_uri": "sqlite:///mlruns.db"}}
    _drive(repo, "ml", tracking, ledger, rows[:2])
    # SIGKILL after experiment 2 started and was logged, before the hub noted it: the next
    # hub sees the row undelivered, and must find the run, not make a second one.
    _drive(repo, "ml", tracking, ledger, rows[2:])
    delivered = ledger.dir / "tracking" / "mlflow.delivered"
    delivered.write_text("0\n")
    _drive(repo, "ml", tracking, ledger, [])

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlruns.db'}")
    exp = client.get_experiment_by_name("autoresearch")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    kinds = sorted(r.data.tags["autoresearch.kind"] for r in runs)
    assert kinds == ["experiment"] * 3 + ["tag"]  # no duplicates after the "resume"
    parent = next(r for r in runs if r.data.tags["autoresearch.kind"] == "tag")
    by_id = {int(r.data.tags["autoresearch.exp_id"]): r for r in runs
             if r.data.tags["autoresearch.kind"] == "experiment"}
    one = by_id[1]
    assert one.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert one.data.params["description"] == "raise LR"
    assert one.data.params["LEARNING_RATE"] == "0.05"
    assert one.data.metrics["val_loss"] == 0.2 and one.data.metrics["holdout_val_loss"] == 0.31
    assert one.data.metrics["num_steps"] == 150.0
    assert one.data.tags["status"] == "keep" and one.data.tags["reason"] == "0.2 beats 0.3"
    files = {a.path for a in client.list_artifacts(one.info.run_id)}
    assert files == {"patch.diff", "0001.log"}
    patch = Path(client.download_artifacts(one.info.run_id, "patch.diff", str(tmp_path)))
    assert "+LEARNING_RATE = 0.05" in patch.read_text()
    assert by_id[2].data.tags["status"] == "crash" and by_id[2].info.status == "FAILED"
    assert parent.data.metrics["best_val_loss"] == 0.2


@pytest.mark.slow
def test_wandb_offline_runs_read_back_with_stable_ids(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb", reason="pip install '.[tracking]'")
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))  # no scratch in the home
    from autoresearch.tracking.wandb_tracker import read_offline

    repo = make_repo(tmp_path / "repo")
    ledger, rows = _night(repo, "wb")
    tracking = {"wandb": {"project": "p", "mode": "offline"}}
    _drive(repo, "wb", tracking, ledger, rows)
    _drive(repo, "wb", tracking, ledger, [])  # a resume with nothing new: nothing re-logged
    runs = [read_offline(d) for d in sorted((ledger.dir / "tracking" / "wandb").glob(
        "offline-run-*"))]
    ids = [r["id"] for r in runs]
    assert sorted(set(ids)) == ["wb-0", "wb-1", "wb-2", "wb-tag"]
    assert ids.count("wb-1") == 1  # experiments are never logged twice
    one = next(r for r in runs if r["id"] == "wb-1")
    assert one["config"]["description"] == "raise LR"
    assert one["config"]["LEARNING_RATE"] == "0.05"
    assert one["summary"]["val_loss"] == 0.2 and one["summary"]["holdout_val_loss"] == 0.31
    assert one["summary"]["status"] == "keep" and one["summary"]["reason"] == "0.2 beats 0.3"
    assert {"1.diff", "0001.log"} <= set(one["files"])
    tag = [r for r in runs if r["id"] == "wb-tag"][-1]
    assert tag["summary"]["best_val_loss"] == 0.2


@pytest.mark.slow
def test_the_real_loop_logs_one_mlflow_run_per_experiment(tmp_path: Path) -> None:
    pytest.importorskip("mlflow", reason="pip install '.[tracking]'")
    from conftest import run_cli, toy_toml
    from mlflow.tracking import MlflowClient

    extra = '\n[tracking]\nmlflow = { tracking_uri = "sqlite:///mlruns.db" }\n'
    repo = make_repo(tmp_path / "repo", toml=toy_toml(extra=extra))
    (repo / ".gitignore").write_text("mlruns.db\nmlartifacts/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "ignore the store")
    res = run_cli(repo, "run", "--tag", "live", "--max-experiments", "3", timeout=300)
    assert res.returncode == 0, res.stderr
    rows = Ledger(repo / ".autoresearch" / "live", "val_loss").read()
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlruns.db'}")
    exp = client.get_experiment_by_name("autoresearch")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    ids = sorted(int(r.data.tags["autoresearch.exp_id"]) for r in runs
                 if r.data.tags["autoresearch.kind"] == "experiment")
    assert ids == sorted(e.id for e in rows)  # every row, once, baseline included
    statuses = {int(r.data.tags["autoresearch.exp_id"]): r.data.tags["status"] for r in runs
                if r.data.tags["autoresearch.kind"] == "experiment"}
    assert statuses == {e.id: e.status for e in rows}
