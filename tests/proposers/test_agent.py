"""The agent proposer driving fake agent CLIs: real executable scripts in a tmp dir."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoresearch.proposers import ProposerError, make_proposer
from autoresearch.proposers.agent import AgentProposer, final_message
from autoresearch.task import ConfigError

from .proposer_fixtures import TRAIN, make_context, make_task


def script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\nimport os, sys, json, time, subprocess\n{body}")
    path.chmod(0o755)
    return path


_OPENED: list[AgentProposer] = []


@pytest.fixture(autouse=True)
def no_scratch_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Scratch folders go under tmp_path, and every proposer's close() removes its own."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield
    while _OPENED:
        _OPENED.pop().close()
    assert sorted(p.name for p in tmp.iterdir()) == []


def agent(workdir: Path, options: dict, spec: str = "agent") -> AgentProposer:
    proposer = make_proposer(spec, make_task(workdir), options)
    assert isinstance(proposer, AgentProposer)
    proposer.setup(())
    _OPENED.append(proposer)
    return proposer


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def dead_soon(pid: int, within: float = 3.0) -> bool:
    # SIGKILL is delivered asynchronously; give the kernel a moment to finish the process.
    deadline = time.monotonic() + within
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def test_in_scope_edit_with_custom_command(workdir, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script(bin_dir / "fake-agent", """
prompt_file, files = sys.argv[1], sys.argv[2:]
prompt = open(prompt_file).read()
assert prompt == sys.stdin.read(), "the prompt also arrives on stdin"
json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "prompt": prompt,
           "env": os.environ["AUTORESEARCH_PROMPT_FILE"]},
          open(os.environ["RECORD"], "w"))
src = open("train.py").read().replace("lr = 0.02", "lr = 0.01")
open("train.py", "w").write(src)
print("Reading train.py...")
print("Description: lower the learning rate to 0.01")
""")
    record = tmp_path / "record.json"
    monkeypatch.setenv("RECORD", str(record))
    proposer = agent(workdir, {"command": f"{bin_dir}/fake-agent {{prompt_file}} {{files}}"})
    p = proposer.propose(make_context(workdir, feedback="duplicate of #3", experiment_id=4))
    assert p.error is None
    assert p.description == "lower the learning rate to 0.01"
    assert (workdir / "train.py").read_text() == TRAIN.replace("lr = 0.02", "lr = 0.01")
    seen = json.loads(record.read_text())
    prompt_file = Path(seen["argv"][0])
    assert seen["argv"][1:] == ["train.py"]
    assert Path(seen["cwd"]) == workdir
    assert workdir not in prompt_file.parents  # never a scope violation
    assert seen["env"] == str(prompt_file)
    for needle in ("Minimize val_loss", "Edit only these files: train.py", "duplicate of #3",
                   "Description:"):
        assert needle in seen["prompt"]
    assert p.meta["agent"] == "command" and p.meta["exit_code"] == 0
    proposer.close()
    assert not prompt_file.exists()  # the scratch folder is cleaned up


def test_relative_command_resolves_against_the_task_root(workdir):
    script(workdir / "agent.py", 'print("all done")\n')
    p = agent(workdir, {"command": "./agent.py"}).propose(make_context(workdir))
    assert p.error is None and p.description == "all done"


def test_hang_is_killed_at_its_timeout_with_its_children(workdir, tmp_path):
    pids = tmp_path / "pids"
    script(tmp_path / "hang", f"""
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stubborn agent: needs SIGKILL
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
print("thinking...", flush=True)
time.sleep(60)
""")
    proposer = agent(workdir, {"command": str(tmp_path / "hang"), "timeout": 2.0})
    proposer.kill_grace = 0.3
    p = proposer.propose(make_context(workdir))
    # No clock here: the pid file is the readiness mark, and what counts is that the
    # SIGTERM-proof leader and its child are gone once propose() returns.
    assert p.error is not None and "timed out after 2s" in p.error
    assert pids.exists(), "the agent never got going: its pid file is the readiness mark"
    leader, child = map(int, pids.read_text().split())
    assert dead_soon(leader) and dead_soon(child)
    assert p.meta["exit_code"] is None and "thinking..." in p.meta["log_tail"]


def test_children_left_behind_after_a_normal_exit_are_killed(workdir, tmp_path):
    pids = tmp_path / "pids"
    script(tmp_path / "leaky", f"""
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open({str(pids)!r}, "w").write(str(child.pid))
print("Description: started a background job and left")
""")
    p = agent(workdir, {"command": str(tmp_path / "leaky")}).propose(make_context(workdir))
    assert p.error is None
    assert dead_soon(int(pids.read_text()))


def test_failing_agent_is_an_invalid_proposal_with_its_stderr(workdir, tmp_path):
    script(tmp_path / "broken", 'sys.stderr.write("rate limit reached\\n"); sys.exit(3)\n')
    p = agent(workdir, {"command": str(tmp_path / "broken")}).propose(make_context(workdir))
    assert p.error == "agent exited with code 3: rate limit reached"


def test_missing_binary_fails_at_setup(workdir, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    proposer = make_proposer("agent", make_task(workdir), {"agent": "claude"})
    with pytest.raises(ProposerError, match="`claude` is not on PATH.*npm install"):
        proposer.setup(())
    proposer = make_proposer("agent", make_task(workdir), {"command": "./nope.sh {prompt_file}"})
    with pytest.raises(ProposerError, match="nope.sh is not an executable file"):
        proposer.setup(())


def test_claude_preset_flags_and_json_cost(workdir, monkeypatch, tmp_path):
    # A stand-in named `claude` on PATH: records its argv and answers like `--output-format json`.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    script(bin_dir / "claude", f"""
json.dump(sys.argv[1:], open({str(record)!r}, "w"))
assert "Minimize val_loss" in sys.stdin.read()
open("train.py", "a").write("# tuned\\n")
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False,
                   "result": "Edited train.py.\\n\\nDescription: add a comment",
                   "total_cost_usd": 0.0421,
                   "usage": {{"input_tokens": 1200, "output_tokens": 300}}}}))
""")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    p = agent(workdir, {"model": "sonnet"}, spec="agent:claude").propose(make_context(workdir))
    argv = json.loads(record.read_text())
    assert argv[:5] == ["-p", "--permission-mode", "acceptEdits", "--output-format", "json"]
    assert argv[5:] == ["--disallowedTools", "Bash,WebFetch,WebSearch", "--model", "sonnet"]
    assert p.error is None and p.description == "add a comment"
    assert p.cost_usd == pytest.approx(0.0421) and p.tokens == 1500
    assert (workdir / "train.py").read_text().endswith("# tuned\n")


def test_final_message_fallbacks():
    assert final_message("step 1\n\nI changed the\nwarmup schedule.\n")[0] == (
        "I changed the warmup schedule.")
    err = final_message(json.dumps({"result": "Credit balance too low", "is_error": True}))
    assert err[3] == "Credit balance too low"


@pytest.mark.parametrize("options, message", [
    ({}, "proposer.agent: required"),
    ({"agent": "cursor"}, "proposer.agent: expected one of claude, codex, aider"),
    ({"agent": "claude", "command": "x"}, "both `agent` and `command`"),
    ({"agent": "claude", "provider": "openai"}, "proposer.provider: not an option of the agent"),
    ({"command": "x", "timeout": 0}, "proposer.timeout: must be > 0"),
    ({"command": 3}, "proposer.command: expected a string or a list"),
])
def test_config_errors_name_the_key(workdir, options, message):
    with pytest.raises(ConfigError, match=message):
        make_proposer("agent", make_task(workdir), options)
