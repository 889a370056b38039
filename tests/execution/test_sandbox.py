"""The phase boundary with the real bubblewrap: what a sandboxed phase can see and do.

Each test runs a real command through `PhaseRunner` and checks the outcome from
outside. They skip only where bwrap cannot create namespaces (CI installs it).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from autoresearch.execution.phase import Phase, PhaseRunner
from autoresearch.execution.sandbox import Access, Sandbox, bwrap_works

pytestmark = pytest.mark.skipif(bwrap_works() is not None,
                                reason=f"no sandbox here: {bwrap_works()}")
PY = sys.executable


def _run(tmp: Path, code: str, access: Access | None = None, timeout: float = 30,
         disk_mb: int = 4096, env: dict[str, str] | None = None):
    cwd = tmp / "export"
    cwd.mkdir(exist_ok=True)
    (cwd / "probe.py").write_text(code)
    runner = PhaseRunner(Sandbox("required"), disk_mb=disk_mb)
    res = runner.run(Phase("run", [PY, "probe.py"], cwd, tmp / "phase.log", timeout,
                           {**os.environ, **(env or {})}, access or Access()))
    return res, (tmp / "phase.log").read_text()


def test_sees_only_its_export_and_the_system(tmp_path: Path) -> None:
    secret = tmp_path / "state" / "results.jsonl"
    secret.parent.mkdir()
    secret.write_text("holdout 0.1\n")
    res, out = _run(tmp_path, f"""
import os
print("state", os.path.exists({str(secret)!r}))
print("tmp", sorted(os.listdir("/tmp")))
print("around", sorted(os.listdir({str(tmp_path)!r})))
print("root", os.path.exists("/root/.bashrc"))
print("cwd", sorted(os.listdir(".")))
""")
    assert res.exit_code == 0, out
    assert "state False" in out and "root False" in out
    # /tmp is private: the empty path down to the export, nothing beside it.
    assert "around ['export']" in out
    assert "cwd ['probe.py']" in out


def test_venv_and_system_are_read_only(tmp_path: Path) -> None:
    target = Path(sys.prefix) / "lib" / "evil.pth"
    res, out = _run(tmp_path, f"""
for path in ({str(target)!r}, "/usr/lib/evil.pth", "/etc/evil"):
    try:
        open(path, "w").write("import os")
        print("wrote", path)
    except OSError as e:
        print("refused", path, e.errno)
""")
    assert res.exit_code == 0, out
    assert "wrote" not in out and out.count("refused") == 3
    assert not target.exists()


def test_state_written_to_tmp_and_home_does_not_outlive_the_phase(tmp_path: Path) -> None:
    code = """
import os
for d in ("/tmp", os.environ["HOME"]):
    print(d, sorted(os.listdir(d)))
    open(os.path.join(d, "weights.pt"), "w").write("x")
"""
    _, first = _run(tmp_path, code)
    _, second = _run(tmp_path, code)
    assert "weights.pt" not in second, second


def test_a_setsid_double_fork_dies_with_the_phase(tmp_path: Path) -> None:
    marker = tmp_path / "export" / "alive"
    res, out = _run(tmp_path, f"""
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.environ.clear()
        for _ in range(100):
            time.sleep(0.1)
            open({str(marker)!r}, "a").write("x")
        os._exit(0)
    os._exit(0)
print("parent done")
""")
    assert res.exit_code == 0, out
    size = marker.stat().st_size if marker.exists() else 0
    time.sleep(1.0)
    after = marker.stat().st_size if marker.exists() else 0
    assert after == size, "a daemon kept writing after the phase ended"


def test_no_network_unless_the_phase_needs_it(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    threading.Thread(target=lambda: server.accept(), daemon=True).start()
    code = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3)
    print("connected")
except OSError as e:
    print("blocked", e)
"""
    _, cut = _run(tmp_path, code)
    assert "blocked" in cut
    _, shared = _run(tmp_path, code, Access(network=True))
    assert "connected" in shared
    server.close()


def test_eval_only_data_is_hidden_inside_readable_data(tmp_path: Path) -> None:
    data = tmp_path / "cache"
    (data / "eval").mkdir(parents=True)
    (data / "train.bin").write_text("train")
    (data / "eval" / "val.bin").write_text("val")
    res, out = _run(tmp_path, f"""
import os
print("train", open({str(data / 'train.bin')!r}).read())
print("eval", os.listdir({str(data / 'eval')!r}))
try:
    open({str(data / 'train.bin')!r}, "w")
except OSError:
    print("readonly")
""", Access(readonly=(data,), hidden=(data / "eval",)))
    assert "train train" in out and "eval []" in out and "readonly" in out, out


def test_writing_past_the_disk_quota_is_a_violation(tmp_path: Path) -> None:
    res, out = _run(tmp_path, """
import time
with open("big.bin", "wb") as fh:
    for _ in range(40):
        fh.write(b"x" * 2**20)
        fh.flush()
        time.sleep(0.1)
""", disk_mb=8)
    assert "over its 8 MB quota" in res.violation, (res, out)
    assert not res.ok


def test_pipes_reach_the_sandbox(tmp_path: Path) -> None:
    r, w = os.pipe()
    cwd = tmp_path / "export"
    cwd.mkdir()
    runner = PhaseRunner(Sandbox("required"))
    res = runner.run(Phase("model", [PY, "-c", f"import os; os.write({w}, b'hello\\n')"],
                           cwd, tmp_path / "p.log", 30,
                           dict(os.environ), Access(), pass_fds=(w,)))
    os.close(w)
    assert res.exit_code == 0
    assert os.read(r, 100) == b"hello\n"
    os.close(r)


def test_required_refuses_without_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    from autoresearch.execution import sandbox as mod
    from autoresearch.task import ConfigError

    monkeypatch.setattr(mod, "bwrap_works", lambda: "bubblewrap (bwrap) is not installed")
    with pytest.raises(ConfigError, match="apt-get install bubblewrap"):
        Sandbox("required")
    auto = Sandbox("auto")
    assert not auto.active and any("no OS sandbox" in p for p in auto.protections_off())


def test_the_harness_directory_is_never_a_python_root(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m autoresearch` puts its cwd (the user's repository) on sys.path; a phase
    must not get that mounted as part of the interpreter."""
    from autoresearch.execution import sandbox as mod

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    mod._python_roots.cache_clear()
    try:
        roots = mod._python_roots()
    finally:
        mod._python_roots.cache_clear()
    assert all(r != tmp_path and r not in tmp_path.parents for r in roots), roots
    box = Sandbox("required", forbidden=(tmp_path / ".git",))
    with pytest.raises(Exception, match="no phase may see"):
        box.wrap("true", tmp_path / "export", Access(readonly=(tmp_path,)))


def test_home_is_private_but_keeps_the_data_listed_under_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task that reads `~/.cache/...` (the GPT template's default cache) finds its data
    there in the sandbox, and nothing else of the user's home."""
    home = tmp_path / "home"
    (home / ".cache" / "data").mkdir(parents=True)
    (home / ".cache" / "data" / "shard.txt").write_text("tokens")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_rsa").write_text("secret")
    monkeypatch.setenv("HOME", str(home))
    res, out = _run(tmp_path, """
import os
print("data", open(os.path.expanduser("~/.cache/data/shard.txt")).read())
print("ssh", os.path.exists(os.path.expanduser("~/.ssh/id_rsa")))
open(os.path.expanduser("~/scratch.txt"), "w").write("gone after the phase")
""", Access(readonly=(home / ".cache" / "data",)), env={"HOME": str(home)})
    assert res.exit_code == 0, out
    assert "data tokens" in out and "ssh False" in out
    assert not (home / "scratch.txt").exists()
