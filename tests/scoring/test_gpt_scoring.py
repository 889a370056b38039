"""The GPT template's split evaluate phase: `prepare.py score` against two `prepare.py serve`
processes, wired with real pipes, on the tiny test profile."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from gpt.gpt_fixtures import (
    TEMPLATE,
    copy_template,
    load_prepare,
    load_train,
    parse_summary,
    prepared_cache,
)

from .wiring import Wired, run_wired

torch = pytest.importorskip("torch")
pytest.importorskip("pyarrow")
pytest.importorskip("tiktoken")
pytest.importorskip("rustbpe")

TINY = dict(CPU_DEPTH="2", CPU_DEVICE_BATCH_SIZE="16", CPU_TOTAL_BATCH_SIZE="1024")

# Appended to train.py in the model servers' tree: ways a proposer could cheat at scoring.
PATCH = """
_honest_forward = GPT.forward
_seen = None


def _cheating_forward(self, idx, targets=None):
    global _seen
    logits = _honest_forward(self, idx, targets)
    if targets is not None:
        return logits
    {body}
    return logits


GPT.forward = _cheating_forward
"""
PEEK = ("logits = logits.clone()\n    logits[:, :-1].scatter_add_(-1, idx[:, 1:, None], "
        "torch.full_like(logits[:, :-1, :1], 5.0))  # the next token")
LEARN = ("counts = torch.bincount(idx.flatten(), minlength=logits.size(-1)).float()\n"
         "    logits = logits if _seen is None else logits + 0.5 * torch.log1p(_seen)\n"
         "    _seen = counts if _seen is None else _seen + counts  # remembers the eval rows")
NAN = "logits = logits * float('nan')"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepared_cache(tmp_path_factory.mktemp("score"))


def hand_over(monkeypatch, cache: Path, repo: Path, handover: Path) -> tuple:
    """A small random GPT (projections not zero, so every layer matters), handed over by
    finish() as a run would; returns it with the prepare module and tokenizer."""
    p = load_prepare(monkeypatch, cache)
    t = load_train(monkeypatch, repo / "train.py")
    torch.manual_seed(0)
    tok = p.Tokenizer.from_directory()
    config = t.model_config(tok.get_vocab_size(), torch.device("cpu"))
    model = t.build_model(config)
    for block in model.blocks:
        torch.nn.init.normal_(block.attn.c_proj.weight, std=0.05)
        torch.nn.init.normal_(block.mlp.c_proj.weight, std=0.05)
    torch.nn.init.normal_(model.lm_head.weight, std=0.05)
    handover.mkdir()
    monkeypatch.setenv("AUTORESEARCH_HANDOVER", str(handover))
    p.finish(model, config, {"training_seconds": 1.0, "peak_vram_mb": 1.0}, tok, 16)
    return p, model.eval(), tok


def trees(tmp_path: Path, patch: str = "") -> tuple[Path, Path]:
    """The model servers' tree (train.py included, patched) and the scorer's (no train.py)."""
    repo = copy_template(tmp_path / "repo", **TINY)
    scorer = tmp_path / "scorer"
    shutil.copytree(repo, scorer)
    (scorer / "train.py").unlink()  # as the harness does: nothing editable to import
    if patch:
        with open(repo / "train.py", "a") as f:
            f.write(PATCH.format(body=patch))
    return repo, scorer


def score(repo: Path, scorer: Path, cache: Path, handover: Path, *args: str) -> Wired:
    """Score the handover. The servers get an empty cache: no data, no tokenizer, nothing
    to read but train.py, prepare.py and the weights."""
    env = {**os.environ, "AUTORESEARCH_CACHE": str(cache), "AUTORESEARCH_PROFILE": "tiny",
           "AUTORESEARCH_HANDOVER": str(handover), "AUTORESEARCH_DEVICE": "cpu",
           "PYTHONDONTWRITEBYTECODE": "1"}
    nothing = {"AUTORESEARCH_CACHE": str(handover.parent / "no-cache")}
    serve = [sys.executable, "prepare.py", "serve"]
    return run_wired([sys.executable, "prepare.py", "score", *args], [serve, serve],
                     scorer_cwd=scorer, server_cwd=repo, env=env, server_env=nothing,
                     timeout=180)


@pytest.mark.slow
def test_an_honest_model_scores_exactly_what_evaluate_bpb_gives(monkeypatch, tmp_path,
                                                                 cache) -> None:
    repo, scorer = trees(tmp_path)
    p, model, tok = hand_over(monkeypatch, cache, repo, tmp_path / "handover")
    for split in ("val", "holdout"):
        result = score(repo, scorer, cache, tmp_path / "handover", "--split", split)
        assert result.returncode == 0, result.output + "\n".join(result.server_logs)
        summary = parse_summary(result.stdout)
        # The scorer's own numbers only: nothing the run reported about itself.
        assert list(summary) == ["val_bpb", "num_params_M", "depth"]
        expected = p.evaluate_bpb(model, tok, p.EVAL_BATCH_SIZE, split=split)
        assert abs(float(summary["val_bpb"]) - expected) <= 1e-6  # printed to 6 decimals
        n_params = sum(q.numel() for q in model.parameters())
        assert float(summary["num_params_M"]) == round(n_params / 1e6, 1)
        assert int(summary["depth"]) == 2
        assert f"on {split} (tiny profile): 16 batches" in result.stdout
        assert result.server_codes == (0, 0)
        assert "answered" in result.server_logs[1]
        assert not (tmp_path / "no-cache").exists()  # the servers never looked for data
    assert not (scorer / "train.py").exists()


@pytest.mark.slow
@pytest.mark.parametrize("patch, code, reason", [
    (PEEK, 3, "integrity: logits at positions 0.."),
    (LEARN, 3, "integrity: the model's outputs depend on what it was sent before"),
    (NAN, 1, "model server 0, request 1: the logits are not all finite"),
], ids=["peeks", "learns-from-eval", "nan"])
def test_a_cheating_or_broken_train_py_gets_no_score(monkeypatch, tmp_path, cache, patch,
                                                     code, reason) -> None:
    repo, scorer = trees(tmp_path, patch)
    hand_over(monkeypatch, cache, repo, tmp_path / "handover")
    result = score(repo, scorer, cache, tmp_path / "handover")
    assert result.returncode == code, result.output + "\n".join(result.server_logs)
    assert reason in result.output
    assert "val_bpb" not in result.stdout


@pytest.mark.slow
def test_no_or_unsafe_handover_is_an_integrity_failure(monkeypatch, tmp_path, cache) -> None:
    repo, scorer = trees(tmp_path)
    load_prepare(monkeypatch, cache)
    handover = tmp_path / "handover"
    handover.mkdir()
    result = score(repo, scorer, cache, handover)
    assert result.returncode == 3
    assert result.stdout.startswith("integrity: the run handed no model over")
    torch.save({"state_dict": {}, "config": {}, "hook": print}, handover / "model.pt")
    result = score(repo, scorer, cache, handover)
    assert result.returncode == 3
    assert result.stdout.startswith("integrity: the handed-over model.pt is not a plain weights")


def test_the_template_wires_the_split_evaluate_phase() -> None:
    config = tomllib.loads((TEMPLATE / "autoresearch.toml").read_text())
    assert config["model_server"] == "python prepare.py serve"
    assert config["evaluate"] == "python prepare.py score"
    assert config["holdout"] == "python prepare.py score --split holdout"
    cache = "${AUTORESEARCH_CACHE:-~/.cache/autoresearch}"
    assert sorted(config["eval_only"]) == [f"{cache}/eval", f"{cache}/raw"]
