"""The Ray backend against a real two-node Ray cluster this test starts itself.

The cluster and the driver run inside private network, PID and mount namespaces
(scripts/ray_local_cluster.sh): Ray only ever talks over that namespace's loopback,
and every process it starts dies with the namespace. The driver (ray_driver.py)
submits real jobs of a real git repo's task and records what came back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ray_local_cluster.sh"
DRIVER = Path(__file__).with_name("ray_driver.py")


def _sealed_namespaces() -> str | None:
    """Why the private namespaces cannot be made here, or None."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs `unshare` and `ip` (util-linux, iproute2)"
    probe = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c",
                            "ip link set lo up && mount -t tmpfs tmpfs /dev/shm"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return ("`unshare --net --pid --mount-proc` is not permitted here (needs root): "
                + probe.stderr.strip()[:200])
    return None


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("ray", reason="the Ray backend's extra: pip install 'autoresearch[ray]'")
    why = _sealed_namespaces()
    if why:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("ray")
    out = work / "out.json"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([str(SCRIPT), "2", "1", sys.executable, str(DRIVER), str(work),
                           str(out)], capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0 and out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    seen = json.loads(out.read_text())
    seen["logs_dir"] = str(work / "logs")
    return seen


@pytest.mark.slow
def test_jobs_run_on_both_nodes_and_their_logs_come_back(cluster_run: dict) -> None:
    pair = cluster_run["pair"]
    assert cluster_run["free_when_full"] == 0
    assert [r["result"]["status"] for r in pair] == ["ok", "ok"]
    assert {r["worker"] for r in pair} == {"w0", "w1"}
    # One CPU per node and two one-CPU jobs at once: one on each node.
    assert len({r["node"] for r in pair}) == 2 and all(r["node"] for r in pair)
    logs = Path(cluster_run["logs_dir"])
    assert {"0001.log", "0001.eval.log", "0002.log", "0002.eval.log"} <= \
        set(cluster_run["logs"])
    first = next(r for r in pair if r["exp"] == 1)
    assert first["result"]["log"] == str(logs / "0001.log")
    # The run saw the node and slot it ran on, and printed them into the shipped log.
    assert cluster_run["log1"].strip() == f"training on {first['node']} w0"


@pytest.mark.slow
def test_holdout_is_scored_beside_the_run_and_checks_pass(cluster_run: dict) -> None:
    first = next(r for r in cluster_run["pair"] if r["exp"] == 1)
    assert first["handover"].startswith("ray-holdout:")
    holdout, checks = cluster_run["follow"]
    assert holdout["kind"] == "holdout" and holdout["result"] == 0.5  # twice the model's 0.25
    assert holdout["node"] == first["node"]
    assert "0001.holdout.log" in cluster_run["logs"]
    assert checks["kind"] == "checks" and checks["result"]["status"] == "keep"
    assert "0001.check0.log" in cluster_run["logs_after_abort"]


@pytest.mark.slow
def test_abort_stops_the_run_and_keeps_its_log(cluster_run: dict) -> None:
    assert cluster_run["abort_running_before"]
    (done,) = cluster_run["aborted"]
    assert done["result"]["status"] == "interrupted"
    assert cluster_run["abort_left"] == []  # no process of the run survived
    assert "0003.log" in cluster_run["logs_after_abort"]


@pytest.mark.slow
def test_a_dead_node_is_a_crash_naming_it_and_the_night_goes_on(cluster_run: dict) -> None:
    (done,) = cluster_run["died"]
    node = cluster_run["victim_node"]
    assert done["node"] == node
    assert done["result"]["status"] == "crash"
    assert f"node {node}" in done["result"]["reason"]
    (after,) = cluster_run["after"]
    assert after["result"]["status"] == "ok" and after["node"] != node


def test_without_ray_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    from autoresearch.execution.ray_backend import RayExecutor
    from autoresearch.task import ConfigError

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'autoresearch\[ray\]'"):
        RayExecutor(1, None, None, None)  # type: ignore[arg-type]


def test_a_killed_jobs_folder_is_swept_and_a_live_one_kept(tmp_path: Path) -> None:
    """A worker killed mid-job leaves its folder; the next job on the node removes it,
    but never the folder of a job still running (its lock is held)."""
    code = ("import sys, tempfile, time; tempfile.tempdir = sys.argv[1]\n"
            "from autoresearch.execution.ray_node import _job_dir\n"
            "d, fd = _job_dir(); (d / 'mine').write_text('x'); print(d, flush=True)\n"
            "time.sleep(float(sys.argv[2]))\n")
    live = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), "60"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout is not None
        live_dir = live.stdout.readline().strip()
        dead = subprocess.run([sys.executable, "-c", code, str(tmp_path), "0"],
                              capture_output=True, text=True, check=True).stdout.strip()
        assert Path(dead, "mine").exists() and Path(live_dir, "mine").exists()
        subprocess.run([sys.executable, "-c", code, str(tmp_path), "0"], check=True,
                       capture_output=True)
        assert not Path(dead).exists()
        assert Path(live_dir, "mine").exists()
    finally:
        live.kill()
        live.wait()
