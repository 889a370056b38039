"""Helpers for the GPT template tests: load the template's modules, build a small corpus.

The template files are standalone scripts (they must not import autoresearch), so tests load
them by path. prepare.py reads its environment at import (cache dir, profile, time budget),
so every test loads a fresh copy after setting the environment it needs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "src" / "autoresearch" / "templates" / "gpt"

SUMMARY_KEYS = ["val_bpb", "training_seconds", "total_seconds", "peak_vram_mb", "mfu_percent",
                "total_tokens_M", "num_steps", "num_params_M", "depth"]


def load_module(name: str, path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # train.py does `from prepare import ...`
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no __pycache__ in the template dir
    spec.loader.exec_module(module)
    return module


def load_prepare(monkeypatch: pytest.MonkeyPatch, cache: Path, profile: str = "tiny",
                 **env: str) -> ModuleType:
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(cache))
    monkeypatch.setenv("AUTORESEARCH_PROFILE", profile)
    monkeypatch.delenv("AUTORESEARCH_TIME_BUDGET", raising=False)
    monkeypatch.delenv("AUTORESEARCH_DATA_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_module("prepare", TEMPLATE / "prepare.py", monkeypatch)


def load_train(monkeypatch: pytest.MonkeyPatch, path: Path = TEMPLATE / "train.py") -> ModuleType:
    assert "prepare" in sys.modules, "load_prepare first"
    return load_module("train", path, monkeypatch)


WORDS = {
    "name": ["Anna", "Ben", "Cleo", "Dan", "Eve", "Finn", "Gus", "Hana"],
    "verb": ["sees", "likes", "finds", "helps", "calls", "meets"],
    "thing": ["the cat", "a red ball", "the old tree", "a small boat", "the blue door"],
    "place": ["in the park", "at home", "by the sea", "near the hill", "in town"],
}


def story(rng: random.Random, index: int) -> str:
    """A short, very regular story: easy to learn, so a few seconds of training show."""
    lines = [f"Story {index}."]
    for _ in range(rng.randint(2, 6)):
        lines.append(f"{rng.choice(WORDS['name'])} {rng.choice(WORDS['verb'])} "
                     f"{rng.choice(WORDS['thing'])} {rng.choice(WORDS['place'])}.")
    return " ".join(lines)


def write_corpus(directory: Path, n_docs: int = 1500, seed: int = 0) -> Path:
    """A .jsonl corpus of n_docs stories; each names its index, so docs are traceable."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "stories.jsonl"
    with open(path, "w") as f:
        for i in range(n_docs):
            f.write(json.dumps({"text": story(rng, i)}) + "\n")
    return path


def prepared_cache(tmp_root: Path) -> Path:
    """A cache with the story corpus prepared (tiny profile) as the active dataset."""
    cache = tmp_root / "cache"
    corpus = write_corpus(tmp_root / "corpus")
    env = {**os.environ, "AUTORESEARCH_CACHE": str(cache), "AUTORESEARCH_PROFILE": "tiny"}
    subprocess.run([sys.executable, str(TEMPLATE / "prepare.py"), "--data", str(corpus)],
                   check=True, capture_output=True, env=env, timeout=120)
    return cache


def copy_template(dest: Path, **literals: str) -> Path:
    """Copy the template and rewrite `NAME = literal` lines, as the sweep proposer would."""
    shutil.copytree(TEMPLATE, dest)
    train = dest / "train.py"
    lines = train.read_text().splitlines(keepends=True)
    for name, value in literals.items():
        hits = [i for i, line in enumerate(lines) if line.startswith(f"{name} = ")]
        assert len(hits) == 1, f"{name} is not a module-level constant of train.py"
        comment = lines[hits[0]].partition("  #")[2]
        lines[hits[0]] = f"{name} = {value}" + (f"  #{comment}" if comment else "\n")
    train.write_text("".join(lines))
    return dest


def parse_summary(stdout: str) -> dict[str, str]:
    """The key/value lines after the final '---' line."""
    block = stdout.rsplit("\n---\n", 1)[1]
    return dict(line.split(":", 1) for line in block.strip().splitlines())
