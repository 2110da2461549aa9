"""A one-node SLURM cluster on this machine, for tests (Debian's slurm 22.05 + munge).

Everything lives in one folder: munge key and socket, slurm.conf, gres.conf,
state, spool, logs and PID files, on free ports. Nothing under /etc is changed,
no systemd is needed, and the daemons are stopped by the PIDs recorded at start.
Client commands (sbatch, squeue, ...) find the cluster through ``SLURM_CONF``:
use :meth:`SlurmCluster.env`. Inside a job, the SLURM executor's job step drops
every ``SLURM_*`` variable before it calls ``srun``, so ``srun`` would look for
/etc/slurm/slurm.conf (where a real cluster keeps it); a ``srun`` wrapper first
on ``PATH`` points it at this cluster's file instead.

The node advertises one GPU (``gpu:1`` backed by ``/dev/null``): SLURM then sets
``CUDA_VISIBLE_DEVICES`` in jobs that request a GPU, which is what the workflow
test checks. The node is in two partitions, ``cpu`` (the default) and ``gpu``, as
a cluster's CPU and GPU nodes would be, so a test sees which partition each job
asked for (:meth:`SlurmCluster.job_records`). Without slurmdbd there is no
``sacct``; status queries and those records use ``squeue``, so finished jobs stay
visible for ``MIN_JOB_AGE`` seconds (longer than a test session's runs).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch")
CPU_PARTITION = "cpu"  # Default=YES
GPU_PARTITION = "gpu"
MIN_JOB_AGE = 3600  # seconds a finished job stays in squeue (>= 3x the status-check delay)


class ClusterUnavailable(RuntimeError):
    """SLURM cannot be installed or started here (no apt, no root): the test skips."""


def install_slurm(timeout: float = 300) -> float:
    """Install SLURM and munge with apt if they are missing; seconds it took (0 if present)."""
    if all(Path(p).exists() for p in DAEMONS):
        return 0.0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ClusterUnavailable("SLURM is not installed and apt-get (as root) is not available")
    start = time.perf_counter()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:  # package lists missing or stale
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=timeout)
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise ClusterUnavailable(
            f"apt-get install {' '.join(PACKAGES)} failed: {done.stderr[-500:]}"
        )
    return time.perf_counter() - start


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def node_line() -> tuple[str, str]:
    """(node name, hardware description) as ``slurmd -C`` reports this machine."""
    done = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30, check=True)
    line = done.stdout.splitlines()[0]
    fields = dict(item.split("=", 1) for item in line.split())
    name = fields.pop("NodeName")
    # Leave memory headroom for the daemons and the test itself.
    fields["RealMemory"] = str(int(int(fields["RealMemory"]) * 0.9))
    return name, " ".join(f"{k}={v}" for k, v in fields.items())


@dataclass
class SlurmCluster:
    """One slurmctld + one slurmd (+ munged) under ``root``; start() / stop()."""

    root: Path
    node: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    start_seconds: float = 0.0

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    def env(self) -> dict[str, str]:
        """Environment for client commands (and Snakemake) talking to this cluster."""
        path = os.pathsep.join([str(self.root / "bin"), os.environ.get("PATH", "")])
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args), capture_output=True, text=True, env=self.env(), timeout=timeout
        )

    def write_config(self) -> None:
        etc, munge_dir = self.root / "etc", self.root / "munge"
        for sub in ("etc", "state", "spool", "log", "run", "bin"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        srun = self.root / "bin" / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec /usr/bin/srun "$@"\n')
        srun.chmod(0o755)
        munge_dir.mkdir(exist_ok=True)
        munge_dir.chmod(0o755)  # munged requires clients to reach its socket
        self.node, hardware = node_line()
        ctld_port, slurmd_port = free_ports(2)
        (etc / "slurm.conf").write_text(
            f"""ClusterName=neurovid-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_dir / "munge.socket"}
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.root / "spool"}
SlurmctldPidFile={self.root / "run" / "slurmctld.pid"}
SlurmdPidFile={self.root / "run" / "slurmd.pid"}
SlurmctldLogFile={self.root / "log" / "slurmctld.log"}
SlurmdLogFile={self.root / "log" / "slurmd.log"}
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MinJobAge={MIN_JOB_AGE}
ReturnToService=2
SchedulerParameters=sched_interval=1
MaxJobCount=100000
NodeName={self.node} NodeAddr=127.0.0.1 {hardware} Gres=gpu:1 State=UNKNOWN
PartitionName={CPU_PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
PartitionName={GPU_PARTITION} Nodes={self.node} MaxTime=INFINITE State=UP
"""
        )
        # A GPU without File= is dropped and the node drains; /dev/null stands in for it.
        (etc / "gres.conf").write_text(f"NodeName={self.node} Name=gpu File=/dev/null Count=1\n")

    def start_munge(self) -> None:
        munge_dir = self.root / "munge"
        key = munge_dir / "munge.key"
        done = subprocess.run(
            ["mungekey", "--create", "--keyfile", str(key), "--force"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise ClusterUnavailable(f"mungekey failed: {done.stderr}")
        user = pwd.getpwnam("munge")
        for path in (munge_dir, key):
            os.chown(path, user.pw_uid, user.pw_gid)
        key.chmod(0o600)
        pid_file = munge_dir / "munged.pid"
        subprocess.run(
            [
                "runuser",
                "-u",
                "munge",
                "--",
                "/usr/sbin/munged",
                f"--key-file={key}",
                f"--socket={munge_dir / 'munge.socket'}",
                f"--pid-file={pid_file}",
                f"--log-file={munge_dir / 'munged.log'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.pids["munged"] = wait_for_pid(pid_file, 10)

    def start(self, deadline_s: float = 60) -> SlurmCluster:
        """Write the configuration, start munged, slurmctld and slurmd, and wait until the node is idle."""
        start = time.perf_counter()
        if os.geteuid() != 0:
            raise ClusterUnavailable("starting SLURM daemons needs root")
        self.write_config()
        self.start_munge()
        env = self.env()
        subprocess.run(
            ["/usr/sbin/slurmctld", "-f", str(self.conf)], env=env, check=True, timeout=30
        )
        self.pids["slurmctld"] = wait_for_pid(self.root / "run" / "slurmctld.pid", 10)
        subprocess.run(
            ["/usr/sbin/slurmd", "-f", str(self.conf), "-N", self.node],
            env=env,
            check=True,
            timeout=30,
        )
        self.pids["slurmd"] = wait_for_pid(self.root / "run" / "slurmd.pid", 10)
        self.wait_until(
            lambda: "is UP" in self.run("scontrol", "ping").stdout, deadline_s, "slurmctld UP"
        )
        self.wait_until(self.node_idle, deadline_s, f"node {self.node} idle")
        self.start_seconds = time.perf_counter() - start
        return self

    def node_idle(self) -> bool:
        # one line per partition the node is in
        states = self.run("sinfo", "-h", "-N", "-o", "%t").stdout.split()
        return bool(states) and set(states) == {"idle"}

    def wait_until(self, check, deadline_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"SLURM test cluster: {what} not reached in {deadline_s} s\n{self.logs()}"
        )

    def logs(self) -> str:
        out = []
        for log in sorted((self.root / "log").glob("*.log")):
            out.append(f"--- {log.name}\n" + log.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    def active_jobs(self) -> list[str]:
        """Ids of jobs pending, running or being cancelled."""
        return self.run("squeue", "-h", "-t", "PD,R,CG", "-o", "%i").stdout.split()

    def job_ids(self) -> set[str]:
        """Ids of all jobs the controller knows (running or finished less than MIN_JOB_AGE ago)."""
        done = self.run("squeue", "-h", "-t", "all", "-o", "%i")
        return set(done.stdout.split())

    def job_records(self) -> dict[str, dict[str, str]]:
        """What SLURM recorded of each job it knows: {job id: {partition, tres_per_job, tres_per_node}}.

        ``--gpus=1`` shows as ``tres_per_job`` (e.g. ``gres:gpu:1``), ``--gres=gpu:1`` as
        ``tres_per_node``; "N/A" where the job asked for none.
        """
        fields = ("JobID", "Partition", "tres-per-job", "tres-per-node")
        done = self.run("squeue", "-h", "-t", "all", "-O", ",".join(f"{f}:|" for f in fields))
        records = {}
        for line in done.stdout.splitlines():
            job, partition, per_job, per_node = (v.strip() for v in line.split("|")[:4])
            records[job] = {
                "partition": partition,
                "tres_per_job": per_job,
                "tres_per_node": per_node,
            }
        return records

    def stop(self, deadline_s: float = 15) -> None:
        """Cancel this cluster's jobs, then stop the daemons by their recorded PIDs."""
        if "slurmctld" in self.pids:
            # Jobs left by a failed or timed-out run would outlive slurmd otherwise.
            self.run("scancel", "--user", pwd.getpwuid(os.getuid()).pw_name)
            try:
                self.wait_until(lambda: not self.active_jobs(), deadline_s, "jobs cancelled")
            except RuntimeError:
                pass  # stop the daemons all the same
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + deadline_s
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.1)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    # A zombie (daemon exited, not reaped by us) counts as stopped.
    return not (stat.exists() and re.search(r"\) Z ", stat.read_text()))


def wait_for_pid(pid_file: Path, deadline_s: float) -> int:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if pid_file.exists() and pid_file.read_text().strip():
            return int(pid_file.read_text().split()[0])
        time.sleep(0.05)
    raise RuntimeError(f"{pid_file} did not appear in {deadline_s} s")
