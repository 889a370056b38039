"""The harness parses the metric; both output conventions are accepted."""

from __future__ import annotations

from autoresearch.metrics import parse_metrics, read_metric

KARPATHY = """step 00950 | loss: 3.2100
---
val_bpb:          0.997900
training_seconds: 300.1
peak_vram_mb:     45060.2
depth:            8
"""


def test_summary_block_after_last_rule_only() -> None:
    found = parse_metrics(KARPATHY)
    assert found == {"val_bpb": 0.9979, "training_seconds": 300.1, "peak_vram_mb": 45060.2,
                     "depth": 8.0}
    assert "loss" not in found  # a training-log line before `---` is not a metric


def test_metric_lines_anywhere_and_last_wins() -> None:
    text = "METRIC total_ms=120\nnoise\nMETRIC total_ms=110.5\nMETRIC cache_hits=7\n"
    assert parse_metrics(text) == {"total_ms": 110.5, "cache_hits": 7.0}


def test_missing_nan_and_inf_are_problems() -> None:
    missing = read_metric("---\nloss: 1\n", "val_bpb")
    assert (missing.problem or "").startswith("metric 'val_bpb' not found in the output")
    assert "metrics found: loss" in (missing.problem or "")
    nan = read_metric("---\nval_bpb: nan\n", "val_bpb")
    assert nan.value is None and "nan" in (nan.problem or "")
    inf = read_metric("METRIC val_bpb=inf\n", "val_bpb")
    assert inf.value is None and "inf" in (inf.problem or "")


def test_secondaries_are_returned_with_primary() -> None:
    r = read_metric(KARPATHY, "val_bpb")
    assert r.value == 0.9979 and r.problem is None
    assert r.metrics["peak_vram_mb"] == 45060.2


# --- intermediate values: METRIC name=value progress=F -----------------------------------

CURVE_LOG = """step 00001 | loss: 9.0
METRIC train_loss=6.5 progress=0.05
METRIC train_loss=5.25 progress=0.1
METRIC val_bpb=1.40 progress=0.5
METRIC train_loss=nan progress=0.15
METRIC train_loss=4.0 progress=1.5
METRIC train_loss=4.0 progress=soon
METRIC train_loss=4.1 progress=1.0
---
val_bpb:          1.100000
"""


def test_progress_lines_are_a_curve_not_the_final_metric() -> None:
    from autoresearch.metrics import ProgressPoint, parse_progress
    curves = parse_progress(CURVE_LOG)
    assert curves["train_loss"] == (ProgressPoint(0.05, 6.5), ProgressPoint(0.1, 5.25),
                                    ProgressPoint(1.0, 4.1))  # nan, 1.5 and "soon" ignored
    assert curves["val_bpb"] == (ProgressPoint(0.5, 1.4),)
    # The final metric ignores every progress line, even one of the primary metric
    # printed after the summary would have been read.
    assert parse_metrics(CURVE_LOG) == {"val_bpb": 1.1}
    assert read_metric(CURVE_LOG, "val_bpb").value == 1.1


def test_a_progress_line_alone_is_no_final_metric() -> None:
    r = read_metric("METRIC val_bpb=0.9 progress=1.0\n", "val_bpb")
    assert r.value is None and "metrics found: none" in (r.problem or "")
    assert read_metric("METRIC val_bpb=0.9 progress=1.0\nMETRIC val_bpb=1.2\n",
                       "val_bpb").value == 1.2
