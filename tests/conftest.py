"""Shared fixtures: real git repositories in tmp dirs and the real CLI in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "examples" / "toy"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def make_repo(path: Path, files: dict[str, str] | None = None, toml: str | None = None) -> Path:
    """A committed git repo holding the toy task, with optional file overrides."""
    shutil.copytree(TOY, path, dirs_exist_ok=True)
    for name, text in (files or {}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        if text.startswith("#!"):
            target.chmod(0o755)
    if toml is not None:
        (path / "autoresearch.toml").write_text(toml)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture(autouse=True)
def _private_runtime_dir(tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Harnesses started by tests register in a runtime dir of this session: none outside
    tmp, and no warnings about (or for) other sessions' harnesses on this machine."""
    monkeypatch.setenv("AUTORESEARCH_RUNTIME_DIR", str(tmp_path_factory.getbasetemp() / "run"))


@pytest.fixture
def toy_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def run_cli(cwd: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """The real `autoresearch` command, as a user would run it."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def toy_toml(extra: str = "", **fields: str) -> str:
    """The toy task's autoresearch.toml with fields replaced (values are TOML literals)."""
    base = {
        "editable": '["train.py"]', "protected": "[]", "run": '"python train.py"',
        "time_budget": "10", "timeout": "60", "checks": "[]", "program": '"program.md"',
    }
    base.update(fields)
    body = "".join(f"{k} = {v}\n" for k, v in base.items())
    return body + extra + '\n[metric]\nname = "val_loss"\ndirection = "minimize"\n'
