"""Throwaway clusters on one machine for the engine tests: a two-node Ray cluster or a one-node Slurm, started inside
fresh network, UTS, PID and mount namespaces, then a command run against it.

    unshare --net --uts --pid --mount --fork --mount-proc python tests/clusters.py ray|slurm WORK -- COMMAND...

Why the namespaces: the network one has loopback only, so nothing listens outside and a Ray node cannot advertise
the machine's real address (``--node-ip-address=127.0.0.1`` alone is not honoured); the UTS one lets each Ray node
have its own host name (``node1``, ``node2``), which every task records, so a test can tell where the tasks ran; the
PID one holds exactly the daemons this script started, which it stops by their PIDs (TERM, then KILL) before it
exits, and the kernel ends whatever is left when its first process exits. ``ray stop`` is not used: it kills by
name, everyone's. Slurm and munge read their configuration and key from WORK (``SLURM_CONF``), not /etc.

The exit status is COMMAND's; the daemons' logs stay under WORK (Ray's in WORK/ray_logs).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY_PORT = 6379
SLURM_HOST = "node1"
NAMESPACES = ["unshare", "--net", "--uts", "--pid", "--mount", "--fork", "--mount-proc"]


def in_cluster(kind: str, work: Path, script: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """For the tests: run a shell script against a fresh cluster of ``kind`` (this file, in new namespaces)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(NAMESPACES + [sys.executable, str(Path(__file__).resolve()), kind, str(work), "--",
                                        "sh", "-c", script], env=env, capture_output=True, text=True, timeout=timeout)


def run(*cmd: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, env=env, **kwargs)


def namespace_setup() -> None:
    run("ip", "link", "set", "lo", "up")
    # glibc's getaddrinfo(AI_ADDRCONFIG), which Slurm and munge use, finds no IPv4 address where 127.0.0.1 is the
    # only one: a second loopback address makes it answer
    run("ip", "addr", "add", "127.0.0.2/8", "dev", "lo")
    run("hostname", SLURM_HOST)


def our_processes() -> list[int]:
    """Every process of this PID namespace but this one (/proc is the namespace's own)."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]


def stop(pids: list[int], grace: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            reap()
            time.sleep(0.2)


def reap() -> None:
    """As the namespace's first process this one inherits every orphaned daemon: collect the ones that ended."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def start_ray(work: Path, env: dict, temp: Path) -> None:
    ray = str(Path(sys.executable).with_name("ray"))
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=300000000",
              "--disable-usage-stats"]
    run(ray, "start", "--head", f"--port={RAY_PORT}", "--include-dashboard=false", f"--temp-dir={temp}",
        *common, env=env, stdout=subprocess.DEVNULL)
    # the second node in its own UTS namespace: its tasks see the host name node2
    run("unshare", "--uts", "sh", "-c", 'hostname node2 && exec "$@"', "sh", ray, "start",
        f"--address=127.0.0.1:{RAY_PORT}", *common, env=env, stdout=subprocess.DEVNULL)
    for _ in range(60):
        status = subprocess.run([ray, "status", f"--address=127.0.0.1:{RAY_PORT}"], env=env, capture_output=True,
                                text=True)
        if status.returncode == 0 and status.stdout.count("node_") >= 2:
            return
        time.sleep(1)
    raise RuntimeError(f"the two-node Ray cluster did not come up:\n{status.stdout}\n{status.stderr}")


SLURM_CONF = """\
ClusterName=test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={work}/munge/socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MpiDefault=none
ReturnToService=2
StateSaveLocation={work}/slurm/state
SlurmdSpoolDir={work}/slurm/spool
SlurmctldPidFile={work}/slurm/slurmctld.pid
SlurmdPidFile={work}/slurm/slurmd.pid
SlurmctldLogFile={work}/slurm/slurmctld.log
SlurmdLogFile={work}/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def start_slurm(work: Path, env: dict, temp: Path) -> None:
    for d in ("munge", "slurm/state", "slurm/spool"):
        (work / d).mkdir(parents=True, exist_ok=True, mode=0o700)
    key = work / "munge" / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o600)
    munge = work / "munge"
    run("munged", "--force", f"--socket={munge / 'socket'}", f"--key-file={key}", f"--pid-file={munge / 'pid'}",
        f"--log-file={munge / 'log'}", f"--seed-file={munge / 'seed'}", env=env)
    conf = work / "slurm" / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=SLURM_HOST, work=work))
    env["SLURM_CONF"] = str(conf)
    run("slurmctld", env=env)
    run("slurmd", env=env)
    for _ in range(60):
        info = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
        if info.returncode == 0 and info.stdout.strip() in ("idle", "mixed"):
            return
        time.sleep(1)
    raise RuntimeError(f"slurmd did not register with slurmctld (sinfo: {info.stdout.strip()!r} "
                       f"{info.stderr.strip()}); logs in {work / 'slurm'}")


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] not in ("ray", "slurm") or argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    kind, work, command = argv[0], Path(argv[1]).resolve(), argv[3:]
    if os.getpid() != 1:
        print("run me as the first process of a new PID namespace (unshare --pid --fork --mount-proc)",
              file=sys.stderr)
        return 2
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python", RAY_USAGE_STATS_ENABLED="0")
    namespace_setup()
    # Ray's socket paths must fit AF_UNIX's 107 bytes: its session folder lives in a short one, its logs are kept
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    try:
        (start_ray if kind == "ray" else start_slurm)(work, env, temp)
        return subprocess.run(command, env=env).returncode
    finally:
        stop(our_processes())
        if (temp / "session_latest" / "logs").is_dir():
            shutil.copytree(temp / "session_latest" / "logs", work / "ray_logs", dirs_exist_ok=True)
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
