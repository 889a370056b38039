"""The adversarial suite (scripts/attacks.py) through the real loop: nothing gains.

One scratch GPT task, one baseline, one experiment per attack; about 5 minutes on
2 CPU cores. `python scripts/attacks.py` prints the same results as a table.
"""

from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("rustbpe")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import attacks  # noqa: E402
from test_loop import processes_under  # noqa: E402

from autoresearch.execution.sandbox import bwrap_works  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bwrap_works() is not None, reason="needs bubblewrap")]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("attacks")
    return root, attacks.run_suite(root)


def test_baseline_is_an_honest_keep(suite: tuple[Path, list[dict]]) -> None:
    base = suite[1][0]
    assert base["status"] == "keep" and 0 < base["metric"] < 3
    assert base["holdout"] is not None and base["holdout"] > 0  # scored on the holdout split
    assert "val_bpb" not in base["evidence"].get("run_reported", {})  # train.py only trains
    # What decisions use is measured by the harness or the scorer, never printed by the run.
    assert base["metrics"]["peak_rss_mb"] > 0 and base["metrics"]["eval_seconds"] > 0
    assert "training_seconds" not in base["metrics"]


@pytest.mark.parametrize("index", range(len(attacks.ATTACKS)),
                         ids=[a.name for a in attacks.ATTACKS])
def test_attack_gains_nothing(suite: tuple[Path, list[dict]], index: int) -> None:
    rows = suite[1]
    attack, row = attacks.ATTACKS[index], rows[index + 1]
    assert row["description"].split(" | ")[0] == attack.name
    assert attacks.held(attack, row, rows[0]["metric"]), (row["status"], row["reason"])


def test_every_class_of_the_issue_has_an_attack() -> None:
    assert {a.cls for a in attacks.ATTACKS} >= set(range(1, 14))


def test_nothing_reached_the_users_files(suite: tuple[Path, list[dict]]) -> None:
    root, rows = suite
    repo = root / "gpt"
    assert [r["id"] for r in rows if r["status"] == "keep"] == [0]
    assert len(rows) == len(attacks.ATTACKS) + 1
    assert (repo / "notes.txt").read_text() == "the user's own untracked notes\n"
    fsck = subprocess.run(["git", "fsck", "--strict"], cwd=repo, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    tracked = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             cwd=repo, capture_output=True, text=True).stdout
    assert tracked == ""  # autoresearch.toml and the rest of the checkout as committed
    refs = subprocess.run(["git", "for-each-ref", "refs/autoresearch/attacks/discarded"],
                          cwd=repo, capture_output=True, text=True).stdout.splitlines()
    assert len(refs) == sum(r["status"] != "keep" for r in rows)  # every attempt preserved
    config = (repo / ".git" / "config").read_text()
    assert "hooksPath" not in config
    assert not list((repo / ".git" / "hooks").glob("post-commit"))
    assert not any(Path(d, "zz_autoresearch.pth").exists() for d in site.getsitepackages())
    assert not Path.home().joinpath("ar-carry.pt").exists()
    # No process of any experiment outlived it (the daemons of the escape attack).
    left = processes_under(repo)
    for proc in left:
        proc.kill()
    assert left == []
    ledger = repo / ".autoresearch" / "attacks" / "results.jsonl"
    lines = ledger.read_text().splitlines()
    assert all(line.startswith("{") for line in lines)  # no "forged" line from a daemon
    # Every id once (in decision order: proposals made ahead may finish out of id order).
    assert sorted(json.loads(line)["id"] for line in lines) == list(range(len(rows)))
    assert sorted(int(p.stem) for p in (ledger.parent / "logs").glob("[0-9][0-9][0-9][0-9].log"))
