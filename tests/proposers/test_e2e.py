"""Proposers through the real loop: `autoresearch run` in a subprocess on a toy git repo,
talking to a scripted chat server on 127.0.0.1, or driving a fake agent script."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import git, make_repo, run_cli, toy_toml

from .proposer_fixtures import ChatServer, Reply, openai_answer

STRICT = '\n[decision]\npolicy = "strict"\n'


def lr_edit(new: str) -> str:
    return (f"Description: raise the learning rate to {new}\n\ntrain.py\n<<<<<<< SEARCH\n"
            f"LEARNING_RATE = 0.02\n=======\nLEARNING_RATE = {new}\n>>>>>>> REPLACE\n")


def ledger(repo: Path, tag: str) -> list[dict]:
    path = repo / ".autoresearch" / tag / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def llm_repo(tmp_path: Path, prices: str = "") -> Path:
    extra = STRICT + '\n[proposer]\nkind = "llm"\nbackoff = 0.01\n' + prices
    return make_repo(tmp_path / "repo", toml=toy_toml(extra=extra))


def test_llm_edit_is_kept_through_the_loop(tmp_path: Path, chat_server: ChatServer) -> None:
    repo = llm_repo(tmp_path, prices='[proposer.prices]\ntoy-model = [2.0, 10.0]\n')
    chat_server.script(openai_answer(lr_edit("0.1"), prompt_tokens=1000, completion_tokens=100))
    res = run_cli(repo, "run", "--tag", "llm", "--max-experiments", "1", "--model", "toy-model",
                  "--base-url", chat_server.url, "--provider", "openai")
    assert res.returncode == 0, res.stderr
    rows = ledger(repo, "llm")
    assert [r["status"] for r in rows] == ["keep", "keep"], rows
    assert rows[1]["description"] == "raise the learning rate to 0.1"
    assert rows[1]["metric"] < rows[0]["metric"]
    assert rows[1]["proposal"]["tokens"] == 1100
    assert abs(rows[1]["proposal"]["cost_usd"] - (1000 * 2 + 100 * 10) / 1e6) < 1e-9
    assert "LEARNING_RATE = 0.1" in git(repo, "show", "autoresearch/llm:train.py")
    assert "LEARNING_RATE = 0.02" in (repo / "train.py").read_text()  # checkout untouched
    # What the model saw: the charter as system prompt, the baseline in the history.
    system, user = chat_server.seen[0].body["messages"]
    assert "Toy research charter" in system["content"]
    assert "#0 keep" in user["content"] and "LEARNING_RATE = 0.02" in user["content"]


def test_cost_cap_stops_the_loop(tmp_path: Path, chat_server: ChatServer) -> None:
    # $1000 per million tokens: each 1200-token answer costs $1.20, over the $1 cap.
    repo = llm_repo(tmp_path, prices='[proposer.prices]\ntoy-model = [1000.0, 1000.0]\n')
    chat_server.script(*(openai_answer(lr_edit(v)) for v in ("0.05", "0.1", "0.2")))
    res = run_cli(repo, "run", "--tag", "cap", "--max-experiments", "3", "--max-cost", "1",
                  "--model", "toy-model", "--base-url", chat_server.url)
    assert res.returncode == 0, res.stderr
    assert "reached --max-cost" in res.stdout + res.stderr
    rows = ledger(repo, "cap")
    assert len(rows) == 2 and rows[1]["proposal"]["cost_usd"] > 1  # baseline + one proposal
    assert len(chat_server.seen) == 1


def test_401_stops_the_run_with_the_key_to_fix(tmp_path: Path, chat_server: ChatServer) -> None:
    repo = llm_repo(tmp_path)
    chat_server.script(Reply(401, {"error": {"message": "invalid x-api-key"}}))
    res = run_cli(repo, "run", "--tag", "auth", "--max-experiments", "3", "--model", "m",
                  "--base-url", chat_server.url, "--provider", "anthropic")
    assert res.returncode != 0
    err = " ".join(res.stderr.split())
    assert "HTTP 401: invalid x-api-key" in err and "ANTHROPIC_API_KEY" in err
    assert len(chat_server.seen) == 1


AGENT = """#!/usr/bin/env python3
import os, pathlib, sys
n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
assert "Toy research charter" in pathlib.Path(sys.argv[1]).read_text()
if n == 1:
    p = pathlib.Path("train.py")
    p.write_text(p.read_text().replace("LEARNING_RATE = 0.02", "LEARNING_RATE = 0.1"))
    print("I edited train.py.\\nDescription: learning rate 0.1")
else:
    pathlib.Path("program.md").write_text("new rules: anything goes\\n")
    print("Description: rewrote the charter")
"""


def test_agent_in_scope_edit_kept_and_out_of_scope_edit_rejected(tmp_path: Path) -> None:
    extra = STRICT + '\n[proposer]\nkind = "agent"\ncommand = "./agent.py {prompt_file}"\n'
    repo = make_repo(tmp_path / "repo", files={"agent.py": AGENT}, toml=toy_toml(extra=extra))
    res = run_cli(repo, "run", "--tag", "ag", "--max-experiments", "2")
    assert res.returncode == 0, res.stderr
    rows = ledger(repo, "ag")
    assert rows[1]["status"] == "keep" and rows[1]["description"] == "learning rate 0.1"
    assert rows[2]["status"] == "invalid"
    assert "outside the mutable surface" in rows[2]["reason"] and "program.md" in rows[2]["reason"]
    assert rows[2]["description"] == "rewrote the charter"
    tip = git(repo, "rev-parse", "autoresearch/ag").strip()
    assert tip == rows[1]["commit"]
    assert git(repo, "show", f"{tip}:program.md") == (repo / "program.md").read_text()
