"""Agent presets against stand-ins that print what Claude Code, Codex and aider really print.

The stand-ins are real executables on PATH; their output shapes are those of Claude Code
2.1 (`--output-format json` result objects), Codex CLI (exit codes) and aider 0.86
(litellm exception lines, exit 0). Test names carry the item of issue 10 they cover.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from autoresearch.proposers import ProposerError, make_proposer
from autoresearch.proposers.agent import AgentProposer
from autoresearch.proposers.base import check_cost_cap

from .proposer_fixtures import make_context, make_task
from .test_agent import agent, no_scratch_left, script  # noqa: F401 - autouse fixture


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


AIDER_AUTH = """
print("Aider v0.86.2\\nModel: gpt-5.4-mini with diff edit format")
print("litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key "
      "provided: sk-bad. You can find your API key at https://platform.openai.com/account.")
print("The API provider is not able to authenticate you. Check your API key.")
"""
AIDER_OFFLINE = """
print("litellm.APIConnectionError: APIConnectionError: OpenAIException - Connection error.")
print("Retrying in 0.2 seconds...")
print("litellm.APIConnectionError: APIConnectionError: OpenAIException - Connection error.")
"""


def test_6_aider_bad_key_with_exit_0_stops_the_run_naming_the_key(workdir, on_path):
    script(on_path / "aider", AIDER_AUTH)
    proposer = agent(workdir, {}, spec="agent:aider")
    with pytest.raises(ProposerError, match="unauthenticated.*OPENAI_API_KEY"):
        proposer.propose(make_context(workdir))


def test_6_aider_failed_model_calls_with_exit_0_are_a_failed_proposal(workdir, on_path):
    script(on_path / "aider", AIDER_OFFLINE)
    p = agent(workdir, {}, spec="agent:aider").propose(make_context(workdir))
    assert p.error is not None and p.error.startswith("aider's model calls failed: litellm.API")


def test_6_claude_invalid_key_result_stops_the_run(workdir, on_path):
    script(on_path / "claude", """
print(json.dumps({"type": "result", "subtype": "success", "is_error": True,
                  "result": "Invalid API key \\u00b7 Please run /login", "total_cost_usd": 0,
                  "usage": {"input_tokens": 0, "output_tokens": 0}}))
sys.exit(1)
""")
    with pytest.raises(ProposerError, match="ANTHROPIC_API_KEY"):
        agent(workdir, {}, spec="agent:claude").propose(make_context(workdir))


def test_6_codex_exit_code_and_quota_message(workdir, on_path):
    script(on_path / "codex", """
sys.stderr.write("ERROR: exceeded retry limit, last status: 429 Too Many Requests, "
                 "code: insufficient_quota\\n")
sys.exit(1)
""")
    with pytest.raises(ProposerError, match="out of quota.*OPENAI_API_KEY"):
        agent(workdir, {}, spec="agent:codex").propose(make_context(workdir))


def test_7_presets_switch_off_side_effects_and_restrict_the_agent(workdir, on_path, tmp_path):
    for name in ("aider", "codex", "claude"):
        script(on_path / name, f"json.dump(sys.argv[1:], open({str(tmp_path)!r} + '/{name}', "
                               "'w'))\nprint('Description: nothing')\n")
        agent(workdir, {}, spec=f"agent:{name}").propose(make_context(workdir))
    aider = json.loads((tmp_path / "aider").read_text())
    for flag in ("--no-git", "--yes-always", "--no-detect-urls", "--no-show-release-notes",
                 "--analytics-disable", "--no-suggest-shell-commands"):
        assert flag in aider
    assert aider[-1] == "train.py"  # only the editable files are in the chat
    codex = json.loads((tmp_path / "codex").read_text())
    assert "sandbox_workspace_write.exclude_slash_tmp=true" in codex
    assert "sandbox_workspace_write.exclude_tmpdir_env_var=true" in codex
    claude = json.loads((tmp_path / "claude").read_text())
    assert claude[claude.index("--disallowedTools") + 1] == "Bash,WebFetch,WebSearch"


@pytest.mark.parametrize("subtype", ["error_max_turns", "error_during_execution"])
def test_8_claude_cost_is_read_from_every_result_subtype(workdir, on_path, subtype):
    script(on_path / "claude", f"""
print(json.dumps({{"type": "result", "subtype": {subtype!r}, "is_error": True,
                   "total_cost_usd": 0.37, "num_turns": 30, "session_id": "s1",
                   "usage": {{"input_tokens": 40, "cache_creation_input_tokens": 2000,
                             "cache_read_input_tokens": 50000, "output_tokens": 900}}}}))
""")
    p = agent(workdir, {}, spec="agent:claude").propose(make_context(workdir))
    assert p.cost_usd == pytest.approx(0.37)
    assert p.tokens == 40 + 2000 + 50000 + 900  # cache reads count
    assert p.error is not None and subtype in p.error


def test_8_timed_out_run_is_charged_an_estimate(workdir, on_path, tmp_path):
    marker = tmp_path / "ran-once"
    script(on_path / "claude", f"""
if os.path.exists({str(marker)!r}):
    time.sleep(60)  # the second run hangs until its timeout
open({str(marker)!r}, "w").close()
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False,
                   "result": "Description: ok", "total_cost_usd": 0.2}}))
""")
    proposer = agent(workdir, {"timeout": 2.0}, spec="agent:claude")
    proposer.kill_grace = 0.3
    first = proposer.propose(make_context(workdir))
    assert first.cost_usd == pytest.approx(0.2) and marker.exists()
    hung = proposer.propose(make_context(workdir, experiment_id=2))
    assert hung.error is not None and "timed out" in hung.error
    assert hung.cost_usd > 0 and "estimated" in hung.meta["cost_estimated"]


def test_9_max_cost_refuses_proposers_that_cannot_report_cost(workdir, tmp_path):
    task = make_task(workdir)
    llm = make_proposer("llm", task, {"model": "house-model", "base_url": "http://127.0.0.1:9"})
    codex = make_proposer("agent", task, {"agent": "codex"})
    assert isinstance(codex, AgentProposer)
    for proposer in (llm, codex):
        with pytest.raises(ProposerError, match="--max-cost \\$0.01 could never stop.*"
                                                "--accept-unknown-cost"):
            check_cost_cap(proposer, 0.01, accepted=False)
        assert "cannot see" in (check_cost_cap(proposer, 0.01, accepted=True) or "")
        assert check_cost_cap(proposer, None, accepted=False) is None
    priced = make_proposer("llm", task, {"model": "gpt-5.4-mini"})  # in the dated table
    claude = make_proposer("agent", task, {"agent": "claude"})  # reports total_cost_usd
    assert check_cost_cap(priced, 0.01, False) is None and check_cost_cap(claude, 0.01,
                                                                           False) is None


def test_9_run_has_the_flag_that_accepts_unknown_cost():
    from autoresearch.cli import build_parser

    args = build_parser().parse_args(["run", "--max-cost", "1", "--accept-unknown-cost"])
    assert args.accept_unknown_cost is True and args.max_cost == 1.0
    assert build_parser().parse_args(["run"]).accept_unknown_cost is False
