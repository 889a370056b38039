"""The sweep proposer finds constants by AST and rewrites only their literals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import make_repo, run_cli, toy_toml
from optuna.distributions import FloatDistribution, IntDistribution

from autoresearch.ledger import Experiment
from autoresearch.proposers import make_proposer
from autoresearch.proposers.base import Context
from autoresearch.proposers.sweep import SweepProposer, find_constants, rewrite
from autoresearch.task import ConfigError, MetricSpec, TaskSpec, load_task

SRC = '''"""doc"""
import os
LEARNING_RATE = 0.04  # matrix lr
DEPTH = 8
USE_VE = True
NAME = "SSSL"
BIAS = -0.5
lower_case = 3
TUPLE = (1, 2)
def f():
    INNER = 3
'''


def test_find_constants() -> None:
    found = find_constants(SRC)
    assert {k: c.value for k, c in found.items()} == {
        "LEARNING_RATE": 0.04, "DEPTH": 8, "USE_VE": True, "NAME": "SSSL", "BIAS": -0.5}


def test_rewrite_touches_only_the_literal() -> None:
    found = find_constants(SRC)
    out = rewrite(SRC, found["LEARNING_RATE"], 0.05)
    assert "LEARNING_RATE = 0.05  # matrix lr\n" in out
    out = rewrite(out, find_constants(out)["BIAS"], -0.25)
    assert "BIAS = -0.25\n" in out
    assert out.replace("0.05", "0.04").replace("-0.25", "-0.5") == SRC


def context(repo: Path, exp_id: int) -> Context:
    task = load_task(repo / "autoresearch.toml")
    return Context(experiment_id=exp_id, workdir=repo, program="", files={},
                   editable=task.editable, metric=task.metric, time_budget=10, history=())


def test_explicit_space_limits_what_changes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(
        extra='[proposer.sweep]\nchanges = 1\nSTEPS = { low = 300, high = 400 }\n'))
    task = load_task(repo / "autoresearch.toml")
    prop = make_proposer("sweep", task, {})
    prop.setup([])
    before = (repo / "train.py").read_text()
    proposal = prop.propose(context(repo, 1))
    after = (repo / "train.py").read_text()
    assert proposal.description.startswith("sweep: STEPS 150 -> ")
    new = find_constants(after)["STEPS"].value
    assert isinstance(new, int) and 300 <= new <= 400
    assert proposal.meta["params"] == {"STEPS": new}
    changed = [a for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert changed == ["STEPS = 150"]


def test_unknown_sweep_option_and_missing_constant(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(extra="[proposer.sweep]\ntrials = 3\n"))
    with pytest.raises(ConfigError, match="proposer.sweep.trials"):
        make_proposer("sweep", load_task(repo / "autoresearch.toml"), {})
    repo2 = make_repo(tmp_path / "r2", toml=toy_toml(
        extra='[proposer.sweep]\nNOPE = [1, 2]\n'))
    prop = make_proposer("sweep", load_task(repo2 / "autoresearch.toml"), {})
    with pytest.raises(Exception, match="NOPE not found"):
        prop.setup([])


# -- the travelling sweep (issue 12, part 2) ------------------------------------------------

TOY = '"""toy"""\nLR = 10.0\nWARMUP = 0.5\nDEPTH = 8\n'


def toy_score(source: str) -> float:
    c = find_constants(source)
    return 1 + 0.5 * math.log10(float(c["LR"].value) / 0.1) ** 2


def sweep_task(root: Path, source: str = TOY, **files: str) -> TaskSpec:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(source)
    for name, text in files.items():
        (root / name).write_text(text)
    return TaskSpec(root=root, editable=("*.py",), protected=(), run="true",
                    metric=MetricSpec("val_loss", "minimize"), time_budget=1.0, timeout=2.0)


def ctx(root: Path, exp_id: int) -> Context:
    return Context(experiment_id=exp_id, workdir=root, program="", files={},
                   editable=("*.py",), metric=MetricSpec("val_loss", "minimize"),
                   time_budget=1.0, history=())


BASELINE = Experiment(id=0, status="keep", description="baseline", metric=3.0,
                      proposer="baseline")


def drive(prop: SweepProposer, root: Path, n: int) -> list[float]:
    """The loop's protocol with a strict keep-if-better decision; returns incumbent scores."""
    train = root / "train.py"
    best = toy_score(train.read_text())
    seen = []
    for i in range(1, n + 1):
        before = train.read_text()
        p = prop.propose(ctx(root, i))
        value = toy_score(train.read_text()) if p.error is None else None
        keep = value is not None and value < best
        if keep:
            assert value is not None
            best = value
        else:
            train.write_text(before)
        prop.observe(Experiment(id=i, status="keep" if keep else "discard",
                                description=p.description, metric=value, proposer="sweep",
                                proposal=p.meta))
        seen.append(best)
    return seen


@pytest.mark.parametrize("sampler", ["tpe", "cmaes"])
def test_sweep_travels_two_decades(tmp_path: Path, sampler: str) -> None:
    root = tmp_path / "w"
    prop = SweepProposer(sweep_task(root), {"sampler": sampler, "LR": {"low": 1e-4,
                                                                         "high": 100.0,
                                                                         "log": True},
                                            "WARMUP": {"low": 0.1, "high": 1.0}})
    prop.setup([BASELINE])
    scores = drive(prop, root, 30)
    # Within 10% of the optimum score (1.0) in 30 experiments, from 3.0 at LR = 10.
    assert scores[-1] <= 1.1, scores


def test_old_fixed_window_cannot_travel(tmp_path: Path) -> None:
    """The contrast that makes the test above meaningful: travel = false stays near the start."""
    root = tmp_path / "w"
    prop = SweepProposer(sweep_task(root), {"travel": False, "startup": 10})
    prop.setup([BASELINE])
    assert drive(prop, root, 30)[-1] > 1.5


def test_region_recentres_on_the_incumbent_and_caps_hold(tmp_path: Path) -> None:
    root = tmp_path / "w"
    prop = SweepProposer(sweep_task(root), {"LR": {"low": 0.5, "high": 1000.0, "log": True},
                                            "DEPTH": {"low": 2, "high": 12}})
    prop.setup([BASELINE])
    lr = prop.regions(find_constants(TOY))["LR"]
    assert isinstance(lr, FloatDistribution)
    assert (lr.low, lr.high) == pytest.approx((2.5, 40.0))  # 10 / 4 .. 10 * 4
    # The incumbent moved to LR = 1.0: the window follows it and the explicit low caps it.
    moved = find_constants(TOY.replace("LR = 10.0", "LR = 1.0"))
    lr = prop.regions(moved)["LR"]
    assert (lr.low, lr.high) == pytest.approx((0.5, 4.0))
    depth = prop.regions(moved)["DEPTH"]
    assert isinstance(depth, IntDistribution)
    assert 2 <= depth.low < 8 < depth.high <= 12  # linear: 8 +- (12 - 2) / 4, snapped


def test_region_grows_after_keep_and_shrinks_after_misses(tmp_path: Path) -> None:
    root = tmp_path / "w"
    prop = SweepProposer(sweep_task(root), {"patience": 2, "LR": {"low": 1e-6, "high": 1e6,
                                                                   "log": True}})
    prop.setup([BASELINE])
    consts = find_constants(TOY)

    def width() -> float:
        d = prop.regions(consts)["LR"]
        assert isinstance(d, FloatDistribution)
        return d.high / d.low

    start = width()
    prop.note_outcome("keep")
    assert width() == pytest.approx(start ** 2)  # scale x2 in log space: 4x4 -> 16x16
    prop.note_outcome("discard")
    assert width() == pytest.approx(start ** 2)  # one miss: patience is 2
    prop.note_outcome("duplicate")  # says nothing about the constants
    prop.note_outcome("crash")
    assert width() == pytest.approx(start)


def test_resume_replays_the_trust_region_and_seeds_the_centre(tmp_path: Path) -> None:
    root = tmp_path / "w"
    task = sweep_task(root)
    first = SweepProposer(task, {"LR": {"low": 1e-3, "high": 1e3, "log": True}})
    first.setup([BASELINE])
    # The incumbent itself is the study's first, measured point: TPE models from the start.
    [seed] = first.study.get_trials()
    assert seed.params == {"LR": 10.0} and seed.value == 3.0
    history = [BASELINE]
    for i, status in enumerate(["keep", "keep", "discard"], start=1):
        p = first.propose(ctx(root, i))
        row = Experiment(id=i, status=status, description=p.description, metric=2.0 - i / 10,
                         proposer="sweep", proposal=p.meta)
        first.observe(row)
        history.append(row)
    again = SweepProposer(task, {"LR": {"low": 1e-3, "high": 1e3, "log": True}})
    again.setup(history)
    assert again.scale == first.scale == 4.0
    assert len(again.study.get_trials()) == len(first.study.get_trials())


def test_cmaes_changes_all_numeric_constants_together(tmp_path: Path) -> None:
    root = tmp_path / "w"
    prop = SweepProposer(sweep_task(root, TOY + "FLAG = True\n"), {"sampler": "cmaes"})
    prop.setup([BASELINE])
    assert set(prop.caps) == {"LR", "WARMUP", "DEPTH"}  # bools are not continuous
    p = prop.propose(ctx(root, 1))
    assert p.error is None and set(p.meta["params"]) == {"LR", "WARMUP", "DEPTH"}
    assert p.meta["sampler"] == "cmaes"


def test_file_option_chooses_the_file(tmp_path: Path) -> None:
    root = tmp_path / "w"
    task = sweep_task(root, "X = 1\n", **{"model.py": "HIDDEN = 64\n"})
    prop = SweepProposer(task, {"file": "model.py"})
    prop.setup([])
    p = prop.propose(ctx(root, 1))
    assert p.description.startswith("sweep: HIDDEN 64 -> ")
    assert (root / "train.py").read_text() == "X = 1\n"
    with pytest.raises(ConfigError, match=r"proposer\.sweep\.file: 'prepare\.py' is not an "
                                          r"editable Python file.*model\.py, train\.py"):
        SweepProposer(task, {"file": "prepare.py"})


@pytest.mark.parametrize(("options", "path"), [
    ({"trials": 3}, r"proposer\.sweep\.trials: unknown option"),
    ({"sampler": "random"}, r"proposer\.sweep\.sampler: expected \"tpe\" or \"cmaes\""),
    ({"LR": {"low": 1, "high": 2, "lg": True}}, r"proposer\.sweep\.LR\.lg: unknown key"),
    ({"grow": "fast"}, r"proposer\.sweep\.grow: expected a number"),
    ({"shrink": 2}, r"proposer\.sweep\.shrink: must be between"),
    ({"travel": "yes"}, r"proposer\.sweep\.travel: expected true or false"),
    ({"changes": 0}, r"proposer\.sweep\.changes: must be >= 1"),
])
def test_config_errors_name_the_key(tmp_path: Path, options: dict, path: str) -> None:
    with pytest.raises(ConfigError, match=path):
        SweepProposer(sweep_task(tmp_path / "w"), options)


def test_sweep_with_cmaes_and_file_through_the_real_loop(tmp_path: Path) -> None:
    extra = '[proposer.sweep]\nfile = "train.py"\nsampler = "cmaes"\n'
    repo = make_repo(tmp_path / "r", toml=toy_toml(extra=extra))
    res = run_cli(repo, "run", "--tag", "t", "--max-experiments", "2")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in
            (repo / ".autoresearch" / "t" / "results.jsonl").read_text().splitlines()]
    swept = [r for r in rows if r["proposer"] == "sweep"]
    assert len(swept) == 2 and all(r["proposal"]["sampler"] == "cmaes" for r in swept)
    assert all(len(r["proposal"]["params"]) >= 2 for r in swept)


def test_integer_sizes_travel_at_half_the_pace(tmp_path: Path) -> None:
    root = tmp_path / "w"
    prop = SweepProposer(sweep_task(root), {})
    prop.setup([BASELINE])
    depth = prop.regions(find_constants(TOY))["DEPTH"]
    assert isinstance(depth, IntDistribution) and (depth.low, depth.high) == (4, 16)
    prop.note_outcome("keep")
    depth = prop.regions(find_constants(TOY))["DEPTH"]
    assert isinstance(depth, IntDistribution) and (depth.low, depth.high) == (2, 32)


def test_cmaes_resume_retells_rows_in_the_same_space(tmp_path: Path) -> None:
    root = tmp_path / "w"
    task = sweep_task(root)
    space = {"sampler": "cmaes", "LR": {"low": 1e-3, "high": 1e3, "log": True},
             "WARMUP": {"low": 0.1, "high": 1.0}}
    first = SweepProposer(task, space)
    first.setup([BASELINE])
    history = [BASELINE]
    for i in range(1, 4):
        p = first.propose(ctx(root, i))
        row = Experiment(id=i, status="discard", description=p.description, metric=3.5,
                         proposer="sweep", proposal=p.meta)
        first.observe(row)
        history.append(row)
    again = SweepProposer(task, space)
    again.setup(history)
    complete = [t for t in again.study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4  # the incumbent and three rows, all over both constants
    assert all(set(t.params) == {"LR", "WARMUP"} for t in complete)
    assert again.propose(ctx(root, 4)).error is None
