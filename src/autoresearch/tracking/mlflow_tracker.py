"""MLflow: one run per experiment, nested under a parent run for the tag.

``[tracking] mlflow = { tracking_uri = "sqlite:///mlruns.db" }``: a relative sqlite path
is taken under the repository, as are artifacts (``mlartifacts/`` beside the database
unless ``artifact_location`` says otherwise). Runs are found again by their tags
(``autoresearch.tag``, ``autoresearch.exp_id``, ``autoresearch.kind``), so a resumed
loop reuses the parent run and an experiment's run instead of making second ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoresearch.ledger import Experiment
from autoresearch.tracking.base import Record, Setup, Started, Tracker

_END = {"crash": "FAILED", "timeout": "FAILED", "invalid": "FAILED", "interrupted": "KILLED"}


def resolve_uri(uri: str, root: Path) -> str:
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str((root / uri[len(prefix):]).resolve())
    return uri


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, options: dict[str, Any]):
        self.options = options
        self.client: Any = None
        self.experiment_id = ""
        self.parent = ""
        self.setup: Setup | None = None
        self.runs: dict[int, str] = {}

    def _find(self, kind: str, exp_id: int | None = None) -> Any:
        assert self.setup is not None
        query = (f"tags.`autoresearch.tag` = '{self.setup.tag}' and "
                 f"tags.`autoresearch.kind` = '{kind}'")
        if exp_id is not None:
            query += f" and tags.`autoresearch.exp_id` = '{exp_id}'"
        found = self.client.search_runs([self.experiment_id], query, max_results=1)
        return found[0] if found else None

    def open(self, setup: Setup) -> None:
        from mlflow.tracking import MlflowClient  # heavy: imported on the delivery thread

        self.setup = setup
        uri = resolve_uri(self.options["tracking_uri"], setup.root)
        self.client = MlflowClient(tracking_uri=uri)
        name = self.options.get("experiment", "autoresearch")
        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            self.experiment_id = existing.experiment_id
        else:
            location = self.options.get("artifact_location")
            if location:
                location = (setup.root / location).resolve().as_uri() \
                    if "://" not in location else location
            elif uri.startswith("sqlite:///"):
                location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
            self.experiment_id = self.client.create_experiment(name, artifact_location=location)
        run = self._find("tag")
        if run is None:
            run = self.client.create_run(
                self.experiment_id, run_name=f"autoresearch/{setup.tag}",
                tags={"autoresearch.tag": setup.tag, "autoresearch.kind": "tag"})
            for key, value in setup.config.items():
                self.client.log_param(run.info.run_id, key, str(value)[:500])
        self.parent = run.info.run_id

    def _run(self, exp_id: int, description: str) -> Any:
        assert self.setup is not None
        run = self._find("experiment", exp_id)
        if run is None:
            run = self.client.create_run(
                self.experiment_id, run_name=f"{exp_id}: {description[:60]}",
                tags={"autoresearch.tag": self.setup.tag, "autoresearch.kind": "experiment",
                      "autoresearch.exp_id": str(exp_id), "mlflow.parentRunId": self.parent})
        return run

    def started(self, event: Started) -> None:
        self.runs[event.exp_id] = self._run(event.exp_id, event.description).info.run_id

    def finished(self, record: Record) -> None:
        from mlflow.entities import Metric, Param, RunTag

        e = record.exp
        run = self._run(e.id, e.description)
        if run.info.status == "FINISHED" and "status" in run.data.tags:
            return  # logged before a kill that came before the hub noted it
        rid = run.info.run_id
        have = run.data.params
        step = e.id
        self.client.log_batch(
            rid,
            metrics=[Metric(k, v, int(e.finished * 1000), step) for k, v in
                     record.metrics.items()],
            params=[Param(k[:250], v) for k, v in record.params.items() if k not in have],
            tags=[RunTag(k, v) for k, v in record.tags.items()])
        if record.patch:
            self.client.log_text(rid, record.patch, "patch.diff")
        if record.log is not None:
            self.client.log_artifact(rid, str(record.log))
        self.client.set_terminated(rid, _END.get(e.status, "FINISHED"))

    def close(self, rows: list[Experiment]) -> None:
        if not self.parent:
            return
        kept = [e for e in rows if e.status == "keep" and e.metric is not None]
        if kept:
            assert self.setup is not None
            self.client.log_metric(self.parent, f"best_{self.setup.metric}", kept[-1].metric)
            self.client.log_metric(self.parent, "kept", len(kept) - 1)
        self.client.log_metric(self.parent, "experiments", len(rows))
        self.client.set_terminated(self.parent, "FINISHED")
