"""Diff reading: counted code lines and seed-only detection."""

from __future__ import annotations

import pytest

from autoresearch.decisions.simplicity import is_seed_only, lines_delta, parse_diff


def diff(removed: list[str], added: list[str], path: str = "train.py") -> str:
    body = [f"-{line}" for line in removed] + [f"+{line}" for line in added]
    return (f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
            f"@@ -10,{len(removed) + 1} +10,{len(added) + 1} @@\n context\n"
            + "\n".join(body) + "\n")


def test_lines_delta_ignores_blank_and_comment_lines():
    d = diff(["x = 1", "# old note", ""], ["x = 2", "y = 3", "# new", "   ", "z = f(y)  # inline"])
    assert lines_delta(d) == 3 - 1
    assert lines_delta("") == 0


def test_lines_delta_counts_deletions_and_several_files():
    d = diff(["a = 1", "b = 2", "c = 3"], ["a = 1"]) + diff([], ["int x;", "// c comment"],
                                                           path="k.cu")
    assert lines_delta(d) == -2 + 1


def test_removed_lines_that_look_like_headers_are_still_counted():
    # A removed line whose text is "-- x" shows as "--- x" inside the hunk.
    d = "--- a/q.py\n+++ b/q.py\n@@ -1,2 +1,1 @@\n--- x\n keep\n"
    changes = parse_diff(d)
    assert changes[0].removed == ["-- x"] and lines_delta(d) == -1


def test_new_and_deleted_files():
    new = "--- /dev/null\n+++ b/new.py\n@@ -0,0 +1,2 @@\n+a = 1\n+b = 2\n"
    gone = "--- a/old.py\n+++ /dev/null\n@@ -1,1 +0,0 @@\n-a = 1\n"
    assert [c.path for c in parse_diff(new + gone)] == ["new.py", "old.py"]
    assert lines_delta(new + gone) == 1


@pytest.mark.parametrize("removed, added", [
    (["SEED = 42"], ["SEED = 137"]),
    (["SEED: int = 42  # fixed"], ["SEED: int = 7"]),
    (["    torch.manual_seed(0)"], ["    torch.manual_seed(1337)"]),
    (["clf = Forest(n=10, random_state=0)"], ["clf = Forest(n=10, random_state=3)"]),
    (["cfg = {'seed': 1, 'lr': 0.1}"], ["cfg = {'seed': 2, 'lr': 0.1}"]),
    (["rng = np.random.default_rng(1)"], ["rng = np.random.default_rng(2)"]),
    ([], ["torch.cuda.manual_seed_all(3)", "random.seed(SEED)", "# reseed"]),
    (["np.random.seed(SEED)"], []),
])
def test_seed_only(removed, added):
    assert is_seed_only(diff(removed, added))


@pytest.mark.parametrize("removed, added", [
    (["DEPTH = 8"], ["DEPTH = 12"]),
    (["SEED = 42", "LR = 0.04"], ["SEED = 137", "LR = 0.05"]),
    (["model = build(seed=1, depth=8)"], ["model = build(seed=1, depth=12)"]),
    (["SEED = 42"], ["SEED = int(os.environ['AUTORESEARCH_SEED'])"]),
    ([], ["x = torch.randn(3)"]),
    (["# SEED = 1"], ["# SEED = 2"]),  # comments only: no code change at all
])
def test_not_seed_only(removed, added):
    assert not is_seed_only(diff(removed, added))


def test_empty_diff_is_not_seed_only():
    assert not is_seed_only("")
