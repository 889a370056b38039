"""The dashboard in a real browser (headless system Chromium via Playwright), over real
ledgers, real git commits and a real `autoresearch run`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import git, make_repo

from autoresearch.integrity.seal import key_path
from autoresearch.ledger import Experiment, Ledger

playwright = pytest.importorskip("playwright.sync_api", reason="pip install '.[browser]'")
CHROMIUM = next((p for p in (os.environ.get("AUTORESEARCH_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p), None)
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="apt-get install chromium")


class Dashboard:
    def __init__(self, repo: Path, tag: str, *extra: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autoresearch", "dashboard", "--tag", tag, "--port", "0",
             *extra], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # readiness: the URL is printed once bound
        assert "http://" in line, self.proc.stderr.read() if self.proc.stderr else line
        self.url = line.split()[-1]
        self.base = self.url.split("/?")[0]
        self.token = self.url.split("token=")[1]

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _commit(repo: Path, parent: str, path: str, old: str, new: str, msg: str) -> str:
    """A commit of `parent` with one line of `path` replaced, leaving HEAD alone."""
    text = git(repo, "show", f"{parent}:{path}").replace(old, new)
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=text,
                          capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "GIT_INDEX_FILE": str(repo / ".git" / "t-index")}
    for args in (["read-tree", parent], ["update-index", "--cacheinfo", f"100644,{blob},{path}"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=repo, env=env, capture_output=True,
                          text=True, check=True).stdout.strip()
    return git(repo, "commit-tree", tree, "-p", parent, "-m", msg).strip()


def _ledger(repo: Path, tag: str) -> Ledger:
    state = repo / ".autoresearch" / tag
    (state).mkdir(parents=True)
    (state / "meta.json").write_text('{"metric": "val_loss", "direction": "minimize"}')
    ledger = Ledger(state, "val_loss", key_path(repo / ".git", tag))
    ledger.load()
    return ledger


@needs_browser
@pytest.mark.slow
def test_page_loads_grows_live_and_shows_a_diff(tmp_path: Path, browser: object) -> None:
    repo = make_repo(tmp_path / "repo")
    base = git(repo, "rev-parse", "HEAD").strip()
    ledger = _ledger(repo, "d")
    ledger.append(Experiment(0, "keep", "baseline", 0.30, commit=base, parent=base,
                             proposer="baseline", reason="baseline", started=1, finished=2))
    c1 = _commit(repo, base, "train.py", "LEARNING_RATE = 0.02", "LEARNING_RATE = 0.05", "lr")
    ledger.append(Experiment(1, "keep", "raise the learning rate", 0.20, commit=c1, parent=base,
                             proposer="test", reason="0.2 beats 0.3", started=2, finished=3,
                             worker="w0"))
    dash = Dashboard(repo, "d")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})  # type: ignore[attr-defined]
        page.goto(dash.url)
        page.wait_for_selector("#table tbody tr[data-id='1']")
        assert page.locator("#table tbody tr").count() == 2
        assert "autoresearch/d" in page.title()
        # The loop writes a row: it appears without a reload.
        c2 = _commit(repo, c1, "train.py", "STEPS = 150", "STEPS = 300", "steps")
        ledger.append(Experiment(2, "discard", "more steps", 0.25, commit=c2, parent=c1,
                                 proposer="test", reason="0.25 does not beat 0.2",
                                 started=2.5, finished=4, worker="w1"))
        page.wait_for_selector("#table tbody tr[data-id='2']", timeout=5000)
        assert page.locator("#table tbody tr").count() == 3
        assert "0.25 does not beat 0.2" in page.inner_text("#table")
        # Lineage: the discarded attempt hangs off the commit it was tried on.
        assert "#2" in page.inner_text("#lineage")
        # Worker lanes: one per worker, each with its experiment's bar.
        assert page.locator("#lanes .lane").count() == 2
        assert page.locator("#lanes .bar[data-id='2']").count() == 1
        page.click("#table tbody tr[data-id='1']")
        page.wait_for_selector("#diff .add")
        assert page.inner_text("#diff .add") == "+LEARNING_RATE = 0.05"
        assert "-LEARNING_RATE = 0.02" in page.inner_text("#diff")
        assert "0.2 beats 0.3" in page.inner_text("#reason")
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    finally:
        dash.close()


@needs_browser
@pytest.mark.slow
def test_a_torn_row_from_a_killed_loop_is_skipped_and_a_resume_shows(
        tmp_path: Path, browser: object) -> None:
    repo = make_repo(tmp_path / "repo")
    base = git(repo, "rev-parse", "HEAD").strip()
    ledger = _ledger(repo, "k")
    ledger.append(Experiment(0, "keep", "baseline", 0.3, commit=base, parent=base,
                             proposer="baseline"))
    with open(ledger.jsonl, "ab") as fh:  # a harness SIGKILLed in the middle of a write
        fh.write(b'{"id": 1, "status": "ke')
    dash = Dashboard(repo, "k")
    try:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(dash.url)
        page.wait_for_selector("#table tbody tr[data-id='0']")
        assert page.locator("#table tbody tr").count() == 1
        resumed = Ledger(ledger.dir, "val_loss", ledger.key_path)
        resumed.load()  # what a resumed harness does: the torn tail goes on the next append
        resumed.append(Experiment(1, "discard", "after resume", 0.4, parent=base,
                                  proposer="test"))
        page.wait_for_selector("#table tbody tr[data-id='1']", timeout=5000)
        assert "after resume" in page.inner_text("#table")
    finally:
        dash.close()


SLOW_TRAIN = """
import sys, time
from pathlib import Path
time.sleep(0.5)
exec(compile(Path("train_real.py").read_text(), "train_real.py", "exec"))
"""


@needs_browser
@pytest.mark.slow
def test_stop_button_stops_a_running_loop(tmp_path: Path, browser: object) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "mv", "train.py", "train_real.py")
    (repo / "train.py").write_text(SLOW_TRAIN)
    toml = (repo / "autoresearch.toml").read_text().replace(
        'editable = ["train.py"]', 'editable = ["train_real.py"]')
    (repo / "autoresearch.toml").write_text(toml)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "slow toy")
    loop = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", "--tag", "s",
                             "--proposer", "sweep", "--policy", "strict",
                             "--max-experiments", "500"], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    state = repo / ".autoresearch" / "s"
    dash = None
    try:
        # Readiness: the baseline row exists (the ledger and the lock are in place).
        while not (state / "results.jsonl").exists() or not Ledger(state, "val_loss").read():
            assert loop.poll() is None, loop.stdout.read() if loop.stdout else ""
            subprocess.run(["sleep", "0.2"], check=True)
        dash = Dashboard(repo, "s")
        # Without the token the stop is refused, and the loop runs on.
        refused = httpx.post(dash.base + "/api/stop")
        assert refused.status_code == 403 and loop.poll() is None
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(dash.url)
        page.wait_for_selector("#stop:not([disabled])", timeout=10000)
        page.click("#stop")
        page.wait_for_selector("#stopmsg:has-text('stop sent')")
        out, _ = loop.communicate(timeout=120)
        assert loop.returncode in (0, 130), out
        assert "stopped by the user" in out
        rows = Ledger(state, "val_loss").read()
        assert 1 <= len(rows) < 500
        page.wait_for_selector("#live:has-text('no loop running')", timeout=10000)
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()
        if dash:
            dash.close()


def test_binding_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    base = git(repo, "rev-parse", "HEAD").strip()
    _ledger(repo, "p").append(Experiment(0, "keep", "baseline", 0.3, commit=base, parent=base,
                                         proposer="baseline"))
    res = subprocess.run([sys.executable, "-m", "autoresearch", "dashboard", "--tag", "p",
                          "--host", "0.0.0.0"], cwd=repo, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "--token" in res.stderr
    dash = Dashboard(repo, "p", "--host", "0.0.0.0", "--token", "s3cret")
    try:
        local = dash.base.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(local + "/api/status").status_code == 401
        ok = httpx.get(local + "/api/status", params={"token": "s3cret"})
        assert ok.status_code == 200 and ok.json()["experiments"][0]["id"] == 0
        assert httpx.get(local + "/api/config").json()["public"] is True
    finally:
        dash.close()


def test_the_lock_names_its_holder_and_a_refused_harness_keeps_it(tmp_path: Path) -> None:
    from autoresearch.ui.dashboard.app import lock_holder
    from autoresearch.workspace import Workspace

    repo = make_repo(tmp_path / "repo")
    ws = Workspace(repo, "l")
    lock = ws.state / "lock"
    with ws.lock():
        assert lock.read_text().split() == [str(os.getpid())]
        assert lock_holder(lock) == os.getpid()
        second = subprocess.run(
            [sys.executable, "-c", "from pathlib import Path; from autoresearch.workspace "
             f"import Workspace; Workspace(Path({str(repo)!r}), 'l').lock().__enter__()"],
            capture_output=True, text=True, timeout=60)
        assert "another `autoresearch run --tag l`" in second.stderr
        assert lock.read_text().split() == [str(os.getpid())]  # not erased by the refusal
    assert lock_holder(lock) is None  # the pid is still written, but nobody holds the lock
