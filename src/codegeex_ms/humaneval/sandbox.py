"""Run one untrusted command: its own process group, resource limits, no network, no root, bounded output.

As root (the usual case in a container or CI), each command runs as

    prlimit (core 0, file size, open files, processes, CPU seconds[, address space])
      -> unshare --mount --net --pid --fork --kill-child   (no network; the whole tree dies with the job)
      -> mount a private tmpfs on /tmp
      -> setpriv to an unprivileged uid (one per worker slot, so a fork bomb in one slot cannot starve another)

in a job directory owned by that uid, with a minimal environment; stdout/stderr go to files outside the job
directory (so a flood is capped by the file-size limit, not buffered in memory) and only their first bytes are
read back. On timeout, or after a normal exit, the process group is killed; the PID namespace also ends
grandchildren that called ``setsid``. Without root (or without util-linux's ``unshare``/``setpriv``) only the
limits, the process group and the timeout apply, and ``Sandbox.warning`` says so.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

OUTPUT_READ_BYTES = 8192
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
FIRST_UID = 61000
UID_POOL = 4096                 # uids FIRST_UID .. FIRST_UID + UID_POOL - 1
# Each slot of each evaluating process on a host claims a uid of its own (an flock on its file here, released by
# the kernel when the process ends): two processes on one host (two shards of a fan-out on one node) never share a
# uid, so they never share its process limit, and a fork bomb in one cannot starve the other.
UID_LOCKS = Path("/var/tmp/codegeex-ms-humaneval-uids")


@dataclass(frozen=True)
class ResourceLimits:
    cpu_seconds: int = 60
    address_space: int | None = 4 << 30       # None for runtimes that reserve large virtual ranges (JVM, node, Go)
    file_size: int = 64 << 20
    open_files: int = 1024
    processes: int = 512                      # per uid; ignored for root, hence the uid drop


@dataclass
class RunResult:
    returncode: int | None                    # None when killed on timeout
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


def _read_head(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(OUTPUT_READ_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return ""


class Sandbox:
    """Runs commands in job directories below ``root`` (which must not be under /tmp: /tmp is replaced by a
    private tmpfs inside the sandbox)."""

    def __init__(self, root: str | Path, isolate: bool = True):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)  # the sandbox uids may pass through to their own job directory, not list it
        self.is_root = os.geteuid() == 0
        self._uids: dict[int, int] = {}
        self._uid_handles: list = []
        self._uid_lock = threading.Lock()
        tools = all(shutil.which(t) for t in ("prlimit", "unshare", "setpriv"))
        self.isolated = isolate and self.is_root and tools and self._probe()
        if self.isolated:
            self.warning = None
        elif not isolate:
            self.warning = "isolation disabled (--no-isolation): samples run as this user with the network"
        elif not self.is_root:
            self.warning = ("not running as root: samples run as this user, with resource limits, a process group "
                            "and timeouts, but with the network and this user's files (run as root, or in a "
                            "container, for namespaces and an unprivileged uid)")
        else:
            self.warning = ("unshare/setpriv missing or not permitted here: samples run with resource limits, a "
                            "process group and timeouts only")

    def _probe(self) -> bool:
        try:
            r = subprocess.run(["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child",
                                "--propagation", "private", "sh", "-c",
                                "mount -t tmpfs tmpfs /tmp && exec setpriv --reuid=%d --regid=%d --clear-groups "
                                "true" % (FIRST_UID, FIRST_UID)], capture_output=True, timeout=20)
            return r.returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    def uid(self, slot: int) -> int:
        """The uid of ``slot``: claimed on first use, the lowest one no other process on this host holds."""
        with self._uid_lock:
            if slot not in self._uids:
                self._uids[slot] = self._claim_uid()
            return self._uids[slot]

    def _claim_uid(self) -> int:
        UID_LOCKS.mkdir(parents=True, exist_ok=True)
        for uid in range(FIRST_UID, FIRST_UID + UID_POOL):
            handle = open(UID_LOCKS / str(uid), "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            if uid in self._uids.values():          # this process holds it already (flock is per open file)
                handle.close()
                continue
            self._uid_handles.append(handle)        # held for the life of this process
            return uid
        raise RuntimeError(f"all {UID_POOL} sandbox uids from {FIRST_UID} are held by other processes on this host")

    def job_dir(self, slot: int) -> Path:
        """A fresh directory for one sample, writable by the slot's uid; remove it with ``cleanup``."""
        path = Path(os.path.join(self.root, f"job-{slot}-{time.monotonic_ns()}"))
        path.mkdir(mode=0o700)
        (path / "tmp").mkdir()
        if self.isolated:
            for p in (path, path / "tmp"):
                os.chown(p, self.uid(slot), self.uid(slot))
        return path

    @staticmethod
    def cleanup(path: Path) -> None:
        def make_writable(func, p, _exc):
            # a sample may have chmod-ed its files; root removes them anyway, others need write permission back
            try:
                os.chmod(os.path.dirname(p), 0o700)
                os.chmod(p, 0o700)
                func(p)
            except OSError:
                pass
        shutil.rmtree(path, onerror=make_writable)

    def run(self, argv: list[str], cwd: Path, slot: int, timeout: float, limits: ResourceLimits = ResourceLimits(),
            env: dict | None = None) -> RunResult:
        """Run ``argv`` in ``cwd`` (a job directory); kill the whole group after ``timeout`` seconds."""
        base_env = {"PATH": MINIMAL_PATH, "HOME": str(cwd), "TMPDIR": str(cwd / "tmp"), "LANG": "C.UTF-8"}
        base_env.update(env or {})
        limit_args = ["--core=0", f"--fsize={limits.file_size}", f"--nofile={limits.open_files}",
                      f"--cpu={limits.cpu_seconds}"]
        if limits.address_space:
            limit_args.append(f"--as={limits.address_space}")
        if self.isolated:
            limit_args.append(f"--nproc={limits.processes}")
            uid = self.uid(slot)
            command = (["prlimit", *limit_args, "--", "unshare", "--mount", "--net", "--pid", "--fork",
                        "--kill-child", "--propagation", "private", "sh", "-c",
                        'mount -t tmpfs -o size=256m,mode=1777 tmpfs /tmp && exec "$@"', "sandbox",
                        "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs", "--"]
                       + argv)
        else:
            command = ["prlimit", *limit_args, "--"] + argv if shutil.which("prlimit") else argv
        out_dir = cwd.parent / (cwd.name + ".out")
        out_dir.mkdir(mode=0o700, exist_ok=True)
        stdout_path, stderr_path = out_dir / "stdout", out_dir / "stderr"
        start = time.monotonic()
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            proc = subprocess.Popen(command, cwd=cwd, env=base_env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True)
            try:
                proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)   # always: orphans of a finished job die too
                except ProcessLookupError:
                    pass
                proc.wait()
        result = RunResult(None if timed_out else proc.returncode, _read_head(stdout_path), _read_head(stderr_path),
                           timed_out, time.monotonic() - start)
        shutil.rmtree(out_dir, ignore_errors=True)
        return result
