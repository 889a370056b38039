"""train.py: the model, the optimizer, and real (tiny) training runs in a subprocess."""

from __future__ import annotations

import ast
import dataclasses
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from gpt_fixtures import (
    SUMMARY_KEYS,
    TEMPLATE,
    copy_template,
    load_prepare,
    load_train,
    parse_summary,
    prepared_cache,
)

# The template's dependencies are the `gpt` extra: skip, don't fail, where it is missing.
torch = pytest.importorskip("torch")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("tiktoken")
pytest.importorskip("rustbpe")

# Small enough to take a few steps per second on 2 CPU cores (tiny profile: seq 64, vocab 512).
TINY = dict(CPU_DEPTH="2", CPU_DEVICE_BATCH_SIZE="16", CPU_TOTAL_BATCH_SIZE="1024")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepared_cache(tmp_path_factory.mktemp("train"))


def run_train(repo: Path, cache: Path, budget: float, device: str = "cpu", timeout: float = 120
              ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUTORESEARCH_CACHE": str(cache), "AUTORESEARCH_PROFILE": "tiny",
           "AUTORESEARCH_TIME_BUDGET": str(budget), "AUTORESEARCH_DEVICE": device}
    return subprocess.run([sys.executable, "train.py"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_training_lowers_val_bpb_far_below_the_untrained(monkeypatch, tmp_path, cache) -> None:
    repo = copy_template(tmp_path / "repo", **TINY)
    result = run_train(repo, cache, budget=8)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = parse_summary(result.stdout)
    assert list(summary) == SUMMARY_KEYS
    for key, value in summary.items():  # Karpathy's alignment: values start in column 19
        assert re.fullmatch(" " * (17 - len(key)) + r"\S+", value), (key, value)
    trained = float(summary["val_bpb"])
    assert float(summary["training_seconds"]) >= 8
    assert int(summary["num_steps"]) > 5 and int(summary["depth"]) == 2
    assert float(summary["peak_vram_mb"]) > 0  # peak RSS on CPU

    # The same model, untrained, scored by the same metric in this process.
    p = load_prepare(monkeypatch, cache)
    t = load_train(monkeypatch, repo / "train.py")
    torch.manual_seed(0)
    tok = p.Tokenizer.from_directory()
    model = t.build_model(t.model_config(tok.get_vocab_size(), torch.device("cpu")))
    untrained = p.evaluate_bpb(model, tok, 16)
    # Near-uniform logits at init: log2(vocab) bits per token, over the val bytes per token.
    docs = pq.read_table(p.val_file()).column("text").to_pylist()
    bytes_per_token = sum(len(d.encode()) for d in docs) / sum(map(len, tok.encode(docs)))
    assert untrained == pytest.approx(math.log2(tok.get_vocab_size()) / bytes_per_token, rel=0.05)
    assert trained < 0.5 * untrained, (trained, untrained)


def test_nan_loss_fails_fast(tmp_path, cache) -> None:
    repo = copy_template(tmp_path / "repo", **TINY, EMBEDDING_LR="1e30")
    result = run_train(repo, cache, budget=60)
    assert result.returncode == 1
    # Fails within its first steps (step 12 here), long before a 60 s budget ends: a count,
    # not a clock, so load cannot make this flake.
    failed = re.search(r"FAIL: training loss nan at step (\d+)", result.stdout)
    assert failed and int(failed.group(1)) < 50, result.stdout[-2000:]
    assert "val_bpb:" not in result.stdout


def test_import_builds_nothing_and_model_is_causal(monkeypatch, cache, capsys) -> None:
    p = load_prepare(monkeypatch, cache)
    t = load_train(monkeypatch)
    assert capsys.readouterr().out == ""  # no training at import: it would print steps
    config = t.GPTConfig(sequence_len=32, vocab_size=64, n_layer=3, n_head=2, n_embd=32,
                         window_pattern="SL")
    model = t.build_model(config)
    assert model.windows == [16, 32, 32]  # S = half context; the last layer is always L
    for block in model.blocks:  # zero-init projections would hide a leak from the future
        torch.nn.init.normal_(block.attn.c_proj.weight, std=0.1)
        torch.nn.init.normal_(block.mlp.c_proj.weight, std=0.1)
    torch.nn.init.normal_(model.lm_head.weight, std=0.1)
    x = torch.randint(0, 64, (2, 32))
    logits = model(x)
    assert logits.shape == (2, 32, 64) and logits.abs().max() <= config.softcap
    y = x.clone()
    y[:, 20] = (y[:, 20] + 1) % 64
    changed = (model(y) - logits).abs().amax(dim=(0, 2)) > 1e-6
    assert not changed[:20].any() and changed[20:].all()
    assert p.MAX_SEQ_LEN == 64  # the tiny profile, as loaded above


def test_sliding_window_attention_sees_only_the_window(monkeypatch, cache) -> None:
    load_prepare(monkeypatch, cache)
    t = load_train(monkeypatch)
    config = t.GPTConfig(sequence_len=32, vocab_size=64, n_layer=1, n_head=2, n_embd=32)
    attn = t.CausalSelfAttention(config, 0)
    model = t.build_model(config)
    cos_sin = model.cos, model.sin
    x = torch.randn(1, 32, 32)
    out = attn(x, None, cos_sin, 8)
    x2 = x.clone()
    x2[:, 5] += 1.0
    changed = (attn(x2, None, cos_sin, 8) - out).abs().amax(dim=(0, 2)) > 1e-6
    # Position i sees keys i-8..i: only positions 5..13 depend on position 5.
    assert changed.nonzero().flatten().tolist() == list(range(5, 14))


def test_polar_express_orthogonalizes(monkeypatch, cache) -> None:
    load_prepare(monkeypatch, cache)
    t = load_train(monkeypatch)
    G = torch.randn(3, 64, 16) @ torch.diag(torch.logspace(-1, 1, 16))  # condition number 100
    for M in (G, G.mT):  # tall and wide
        s = torch.linalg.svdvals(t.orthogonalize(M))
        assert s.min() > 0.6 and s.max() < 1.25, s  # all singular values pushed near 1


def test_schedules_follow_the_budget_fraction(monkeypatch, cache) -> None:
    load_prepare(monkeypatch, cache)
    t = load_train(monkeypatch)
    lr = [t.lr_multiplier(f) for f in (0.0, 0.49, 0.75, 1.0)]
    assert lr == pytest.approx([1.0, 1.0, 0.5, t.FINAL_LR_FRAC])
    assert t.muon_momentum(0.0) == t.MUON_MOMENTUM_START
    assert t.muon_momentum(t.MUON_RAMP_RATIO) == pytest.approx(t.MUON_MOMENTUM)


def test_tunables_are_plain_literals() -> None:
    """The sweep proposer rewrites module-level UPPER_CASE literals; keep them rewritable."""
    tree = ast.parse((TEMPLATE / "train.py").read_text())
    names = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.isupper():
                names.append(name)
                assert isinstance(node.value, ast.Constant), f"{name} is not a plain literal"
    cpu = {n.removeprefix("CPU_") for n in names if n.startswith("CPU_")}
    cuda = {n.removeprefix("CUDA_") for n in names if n.startswith("CUDA_")}
    assert cpu == cuda == {"DEPTH", "ASPECT_RATIO", "HEAD_DIM", "WINDOW_PATTERN",
                           "TOTAL_BATCH_SIZE", "DEVICE_BATCH_SIZE", "VALUE_EMBEDS"}
    assert {"MATRIX_LR", "EMBEDDING_LR", "WARMDOWN_RATIO", "SOFTCAP"} <= set(names)


def test_cpu_defaults_match_the_issue(monkeypatch, cache) -> None:
    p = load_prepare(monkeypatch, cache, profile="cpu")
    t = load_train(monkeypatch)
    config = t.model_config(p.VOCAB_SIZE, torch.device("cpu"))
    n_params = sum(q.numel() for q in t.build_model(config).parameters())
    assert config.sequence_len == 256 and 1e6 < n_params < 5e6  # a few million parameters
    p = load_prepare(monkeypatch, cache, profile="gpu")
    t = load_train(monkeypatch)
    hp = t.hyperparameters(torch.device("cuda"))
    assert (hp["depth"], p.MAX_SEQ_LEN, p.VOCAB_SIZE) == (8, 2048, 8192)  # Karpathy's scale


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_compiled_training(tmp_path, cache) -> None:
    repo = copy_template(tmp_path / "repo", CUDA_DEPTH="2", CUDA_DEVICE_BATCH_SIZE="16",
                         CUDA_TOTAL_BATCH_SIZE="1024")
    result = run_train(repo, cache, budget=20, device="cuda", timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = parse_summary(result.stdout)
    assert float(summary["val_bpb"]) < 3.0 and float(summary["peak_vram_mb"]) > 0


def test_fa3_matches_sdpa(monkeypatch, cache) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    load_prepare(monkeypatch, cache)
    t = load_train(monkeypatch)
    if not t.fa3_available():
        pytest.skip("needs a Hopper GPU with flash_attn_interface (FA3) installed")
    torch.manual_seed(0)
    config = t.GPTConfig(sequence_len=64, vocab_size=64, n_layer=2, n_head=2, n_embd=128,
                         window_pattern="SL")
    sdpa_model = t.build_model(config).cuda()
    for block in sdpa_model.blocks:
        torch.nn.init.normal_(block.attn.c_proj.weight, std=0.1)
    fa3_model = t.build_model(dataclasses.replace(config, use_fa3=True)).cuda()
    fa3_model.load_state_dict(sdpa_model.state_dict())
    x = torch.randint(0, 64, (2, 64), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert (fa3_model(x) - sdpa_model(x)).abs().max() < 0.1


def test_training_prints_its_loss_curve_for_early_stopping(tmp_path, cache) -> None:
    from autoresearch.metrics import parse_metrics, parse_progress
    repo = copy_template(tmp_path / "repo", **TINY)
    budget = 6.0
    result = run_train(repo, cache, budget=budget)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    curve = parse_progress(result.stdout)["train_loss"]
    marks = [math.floor(pt.progress / 0.025 + 1e-9) for pt in curve]
    assert marks == sorted(set(marks)) and len(curve) >= 5  # one line per 2.5% mark crossed
    assert curve[-1].progress == 1.0
    summary = parse_summary(result.stdout)
    # At least every 5% of the budget, unless one step alone took longer (slow machine).
    step = float(summary["training_seconds"]) / int(summary["num_steps"]) / budget
    gaps = [b.progress - a.progress for a, b in zip(curve, curve[1:])]
    assert max(gaps) <= 0.05 + 2 * step, (gaps, step)
    assert all(math.isfinite(pt.value) for pt in curve) and curve[-1].value < curve[0].value
    # The curve never stands in for the final metric.
    found = parse_metrics(result.stdout)
    assert "train_loss" not in found and found["val_bpb"] == float(summary["val_bpb"])
