"""The OS boundary around every phase: what a phase can see, write and reach.

Proposer, run, evaluate (scorer and model servers), holdout and checks all go
through `Sandbox.wrap`. With bubblewrap (`bwrap`, Linux) a phase gets:

- a read-only view of the system (/usr, /etc, /sys) and of the Python
  installation the harness runs from (its venv and base interpreter), so a
  `.pth` or `sitecustomize` planted in the venv is impossible, not detected;
- its own export as the only writable tree (plus what `Access.writable`
  names), a private, empty, size-capped `/tmp` and `$HOME` (at the home's own
  path, holding only the read-only data the task lists under it);
- the task's read-only data, minus the evaluation-only paths, which are
  masked for every phase but the trusted scorer;
- no `.git` and no state directory (ledger, logs, refs): only the plain
  exported tree is mounted;
- new PID, IPC, UTS and (unless the phase needs it) network namespaces, with
  die-with-parent: when the phase's main process ends, the kernel kills every
  process left in its PID namespace, `setsid` daemons included.

Without bwrap (macOS, containers without user namespaces) `mode` is "none":
phases run as plain processes in their own process group, and the in-process
checks of `autoresearch.integrity.tripwire` are the only defence. `protections_off()`
says so in words the harness prints at start.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch.task import ConfigError

MODES = ("auto", "required", "none")
# System trees every phase may read. /bin, /lib... are symlinks into /usr on merged-usr
# systems; they are re-created as symlinks, or bound read-only where they are real.
_SYSTEM = ("/usr", "/etc", "/sys", "/opt")
_ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Files under /etc that a phase has no business reading (bound over with /dev/null).
_SECRETS = ("/etc/shadow", "/etc/gshadow")


@dataclass(frozen=True)
class Access:
    """What one phase may see and touch, beyond the system and the interpreter."""

    writable: tuple[Path, ...] = ()  # bound read-write at their own paths (cwd is added)
    readonly: tuple[Path, ...] = ()  # bound read-only at their own paths
    hidden: tuple[Path, ...] = ()  # masked even where a readonly tree contains them
    network: bool = False


@functools.lru_cache(maxsize=1)
def bwrap_works() -> str | None:
    """Why bubblewrap cannot be used here, or None when it works (probed once)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (bwrap) is not installed"
    probe = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent",
                            "--", "/bin/true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"bwrap cannot create namespaces here ({probe.stderr.strip()[:200]})"
    return None


@functools.lru_cache(maxsize=1)
def _python_roots() -> tuple[Path, ...]:
    """The interpreter, its standard library and site-packages (editable installs too).

    Taken from a fresh interpreter started in `/`, not from our own `sys.path`: that
    holds the directory the harness was started in (the user's repository, with its
    .git and ledger), which must never be mounted into a phase.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run([sys.executable, "-c", "import sys, json; print(json.dumps(sys.path))"],
                           cwd="/", env=env, capture_output=True, text=True)
    paths = json.loads(probe.stdout) if probe.returncode == 0 else []
    roots = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    roots |= {Path(p) for p in paths if p not in ("", "/") and Path(p).is_dir()}
    roots.add(Path(sys.executable).resolve().parent.parent)
    out: set[Path] = set()
    for root in roots:
        out.add(root.resolve())
        if root.absolute() != root.resolve():
            out.add(root.absolute())
    return tuple(_outermost(sorted(out)))


def _home() -> Path | None:
    """The user's home directory, where a private one can be mounted (not `/` or /tmp)."""
    home = Path(os.path.expanduser("~")).absolute()
    if home in (Path("/"), Path("/tmp")) or not home.is_dir():
        return None
    return home


def covers(path: Path, forbidden: Sequence[Path]) -> Path | None:
    """The forbidden path that mounting `path` would expose (it or an ancestor), or None."""
    path = path.resolve()
    for f in forbidden:
        f = f.resolve()
        if f == path or path in f.parents:
            return f
    return None


def _outermost(paths: list[Path]) -> list[Path]:
    """Drop paths already inside another one of the list."""
    kept: list[Path] = []
    for p in sorted(set(paths), key=lambda q: len(q.parts)):
        if not any(k == p or k in p.parents for k in kept):
            kept.append(p)
    return sorted(kept)


class Sandbox:
    """Builds the argv that runs a command inside the phase boundary."""

    def __init__(self, mode: str = "auto", expose: Sequence[Path] = (),
                 tmp_mb: int = 4096, forbidden: Sequence[Path] = ()):
        if mode not in MODES:
            raise ConfigError(f"sandbox: expected one of {', '.join(MODES)}, got {mode!r}")
        problem = bwrap_works() if mode != "none" else "turned off (sandbox = \"none\")"
        if problem and mode == "required":
            raise ConfigError(f"sandbox = \"required\", but {problem}. Install bubblewrap "
                              "(Debian/Ubuntu: apt-get install bubblewrap) on Linux with user "
                              "namespaces, or set sandbox = \"auto\" to run without it.")
        self.active = problem is None
        self.problem = problem
        self.expose = tuple(expose)
        self.tmp_mb = tmp_mb
        # Never mounted, whatever asks for it: the repository's .git, the tag's state.
        self.forbidden = tuple(forbidden)
        self._python = ([r for r in _python_roots() if not covers(r, self.forbidden)]
                        if self.active else [])

    def refuse_forbidden(self, paths: Sequence[Path],
                         what: str = "readonly/sandbox_expose") -> None:
        """ConfigError if mounting one of `paths` would expose .git or the ledger."""
        for path in paths:
            hidden = covers(path, self.forbidden)
            if hidden:
                raise ConfigError(f"{what}: {path} contains {hidden}, which no phase may see "
                                  "(the repository's .git or the ledger). List the data "
                                  "directory itself.")

    def protections_off(self) -> list[str]:
        """What is not enforced in this mode, for the start-up message."""
        if self.active:
            return []
        return [f"no OS sandbox: {self.problem}",
                "phases can read anything the user can (eval-only data reads are detected "
                "by access time only) and write outside their export (only the harness's "
                "own files are snapshotted and restored)",
                "a daemon that leaves the process group is found by its environment only",
                "the venv is writable: a planted .pth file would reach later phases"]

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """The environment as the phase sees it: a private home and temp dir."""
        if not self.active:
            return env
        out = {**env, "TMPDIR": "/tmp"}
        out.pop("AUTORESEARCH_STATE", None)  # the state directory is not there to find
        return out

    def wrap(self, command: str | Sequence[str], cwd: Path, access: Access) -> list[str] | str:
        """`command` as run for a phase in `cwd` with `access`; unchanged when inactive."""
        if not self.active:
            return command if isinstance(command, str) else list(command)
        argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
        if access.network:
            argv.append("--share-net")
        for path in _SYSTEM:
            if os.path.isdir(path):
                argv += ["--ro-bind", path, path]
        for link in _ROOT_LINKS:
            if os.path.islink(link):
                argv += ["--symlink", os.readlink(link), link]
            elif os.path.isdir(link):
                argv += ["--ro-bind", link, link]
        for secret in _SECRETS:
            if os.path.exists(secret):
                argv += ["--ro-bind", "/dev/null", secret]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        for dev in sorted(Path("/dev").glob("nvidia*")) + [Path("/dev/dri")]:
            argv += ["--dev-bind-try", str(dev), str(dev)]
        # A private, empty /tmp and $HOME, capped: a phase cannot fill memory through them.
        # $HOME keeps its path, so data the task reads under `~` (bound below) is where the
        # task's own code looks for it; nothing else of the user's home is there.
        size = str(self.tmp_mb * 2**20)
        argv += ["--size", size, "--tmpfs", "/tmp"]
        home = _home()
        if home is not None:
            argv += ["--size", size, "--tmpfs", str(home)]
        for root in self._python:
            argv += ["--ro-bind", str(root), str(root)]
        self.refuse_forbidden(access.readonly)
        for p in (*self.expose, *access.readonly):
            argv += ["--ro-bind-try", str(p), str(p)]
        for p in access.hidden:  # after the readonly binds that may contain them
            if p.is_dir():
                argv += ["--tmpfs", str(p)]
            elif p.exists():
                argv += ["--ro-bind", "/dev/null", str(p)]
        for p in _outermost([cwd, *access.writable]):
            argv += ["--bind", str(p), str(p)]
        # Everything not bound writable above is read-only, the sandbox's own root too: a
        # phase cannot fill memory by writing into it, nor leave files there.
        argv += ["--remount-ro", "/", "--chdir", str(cwd), "--"]
        if isinstance(command, str):
            return [*argv, "/bin/sh", "-c", command]
        return [*argv, *command]
