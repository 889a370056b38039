"""Config validation: every bad key is reported by name, with a fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_repo, run_cli, toy_toml

from autoresearch.task import ConfigError, load_task


def write(tmp_path: Path, text: str) -> Path:
    repo = make_repo(tmp_path / "r")
    cfg = repo / "autoresearch.toml"
    cfg.write_text(text)
    return cfg


def test_valid_toy_config_loads(tmp_path: Path) -> None:
    task = load_task(write(tmp_path, toy_toml()))
    assert task.editable == ("train.py",)
    assert task.metric.name == "val_loss" and task.metric.direction == "minimize"
    assert task.time_budget == 10 and task.timeout == 60
    assert task.metric.better(0.1, 0.2) and not task.metric.better(0.2, 0.2)


@pytest.mark.parametrize("text, needle", [
    (toy_toml(editables='["x"]'), "unknown key 'editables'"),
    (toy_toml(time_budget='"fast"'), "time_budget: expected a number"),
    (toy_toml(time_budget="true"), "time_budget: expected a number"),
    (toy_toml(editable='["nope.py"]'), "editable: 'nope.py' matches no file"),
    (toy_toml(protected='["missing.py"]'), "protected: 'missing.py' matches no file"),
    (toy_toml(program='"charter.md"'), "program: 'charter.md' does not exist"),
    (toy_toml(timeout="5"), "timeout: 5.0 is below time_budget"),
    (toy_toml(checks='["ok", 3]'), "checks: expected a list of strings"),
    (toy_toml().replace('direction = "minimize"', 'direction = "down"'), "metric.direction"),
    (toy_toml().replace('name = "val_loss"\n', 'name = "val_loss"\nunit = "x"\n'),
     "metric.unit: unknown key"),
    ("editable = ['train.py']\n", "missing required key 'run'"),
    ("run = [", "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_task(write(tmp_path, text))
    assert needle in str(err.value)


def test_cli_reports_bad_toml_key_and_exits_2(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(tiem_budget="3"))
    res = run_cli(repo, "run", "--tag", "x")
    assert res.returncode == 2
    assert "unknown key 'tiem_budget'" in res.stderr
    assert not (repo / ".autoresearch").exists()  # refused before touching anything


def test_missing_config_suggests_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="autoresearch init"):
        load_task(tmp_path / "autoresearch.toml")
