"""The adversarial suite (scripts/attacks.py) through the real loop: nothing gets kept.

One scratch GPT task, one baseline, one experiment per attack; about 3 minutes on
2 CPU cores. `python scripts/attacks.py` prints the same results as a table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("rustbpe")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import attacks  # noqa: E402


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return attacks.run_suite(tmp_path_factory.mktemp("attacks"))


def test_baseline_is_an_honest_keep(rows: list[dict]) -> None:
    base = rows[0]
    assert base["status"] == "keep" and 0 < base["metric"] < 3
    assert base["holdout"] is not None and base["holdout"] > 0  # scored on the holdout split
    assert "val_bpb" not in base["evidence"].get("run_reported", {})  # train.py only trains


@pytest.mark.parametrize("index", range(len(attacks.ATTACKS)),
                         ids=[a.name for a in attacks.ATTACKS])
def test_attack_is_caught_with_its_reason(rows: list[dict], index: int) -> None:
    attack, row = attacks.ATTACKS[index], rows[index + 1]
    assert row["description"] == attack.name
    assert row["status"] in ("invalid", "crash"), row["reason"]
    assert attack.expect in row["reason"], row["reason"]


def test_nothing_but_the_baseline_was_kept(rows: list[dict]) -> None:
    assert [r["id"] for r in rows if r["status"] == "keep"] == [0]
    assert len(rows) == len(attacks.ATTACKS) + 1
