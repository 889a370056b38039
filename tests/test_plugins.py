"""Plugins that load: a real package, pip-installed into the venv, found by entry points."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_repo, run_cli, toy_toml
from test_loop import ledger

PACKAGE = "autoresearch-test-plugin"
MODULE = '''
"""A third-party proposer and policy, as a user would ship them."""
from autoresearch.decisions.policy import Policy, Verdict
from autoresearch.proposers import Proposal, Proposer


class Doubler(Proposer):
    name = "mine"

    def propose(self, context):
        path = context.workdir / "train.py"
        text = path.read_text()
        path.write_text(text.replace("STEPS = 150", "STEPS = 300"))
        return Proposal("mine: double STEPS")


def make(arg, task, options):
    return Doubler()


class KeepAll(Policy):
    name = "keep-all"

    def judge(self, candidate, incumbent):
        return Verdict("keep", "the keep-all plugin keeps everything", {"policy": self.name})
'''
PYPROJECT = f'''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{PACKAGE}"
version = "0.1"

[tool.setuptools]
py-modules = ["ar_test_plugin", "ar_test_broken"]

[project.entry-points."autoresearch.proposers"]
mine = "ar_test_plugin:make"
broken = "ar_test_broken:make"

[project.entry-points."autoresearch.policies"]
keep-all = "ar_test_plugin:KeepAll"
'''


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *args],
                   check=True, capture_output=True, text=True)


@pytest.fixture
def installed_plugin(tmp_path: Path) -> Iterator[None]:
    """Build and install the plugin package into this venv; always uninstall it after."""
    src = tmp_path / "plugin"
    src.mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "ar_test_plugin.py").write_text(MODULE)
    (src / "ar_test_broken.py").write_text("import no_such_dependency_here\n")
    try:
        # Offline where the venv has setuptools; otherwise pip fetches it to build.
        isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
        _pip("install", "--no-deps", *isolation, str(src))
        yield
    finally:
        subprocess.run([sys.executable, "-m", "pip", "-q", "uninstall", "-y", PACKAGE],
                       capture_output=True)


@pytest.mark.slow
def test_an_installed_plugin_proposer_and_policy_run(tmp_path: Path,
                                                     installed_plugin: None) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(time_budget="5"))
    helptext = run_cli(repo, "run", "--help").stdout
    assert "mine" in helptext and "broken" in helptext  # listed without being imported
    res = run_cli(repo, "run", "--tag", "p", "--proposer", "mine", "--policy", "keep-all",
                  "--max-experiments", "1")
    assert res.returncode == 0, res.stderr
    rows = ledger(repo, "p")
    assert [r["proposer"] for r in rows] == ["baseline", "mine"]
    assert rows[1]["description"] == "mine: double STEPS"
    assert rows[1]["status"] == "keep"
    assert rows[1]["reason"] == "the keep-all plugin keeps everything"

    res = run_cli(repo, "run", "--tag", "q", "--proposer", "broken", "--max-experiments", "1")
    assert res.returncode == 2
    assert "proposer plugin 'broken' (ar_test_broken:make, from autoresearch-test-plugin) " \
           "failed to import: ModuleNotFoundError" in res.stderr.replace("\n", "")


def test_an_unknown_kind_lists_the_choices(toy_repo: Path) -> None:
    res = run_cli(toy_repo, "run", "--tag", "x", "--proposer", "nosuch", "--max-experiments", "1")
    assert res.returncode == 2 and "unknown kind 'nosuch'" in res.stderr
    assert "sweep" in res.stderr
