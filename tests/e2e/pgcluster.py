"""A private PostgreSQL cluster on its own port, which a test may stop, start, freeze and thaw at will.

The shared server of the other tests must never be touched; this one lives in a temporary directory and is owned
by the `postgres` user (initdb refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise FileNotFoundError(name)
    return found[-1]


class PrivateCluster:
    def __init__(self) -> None:
        # Not under pytest's tmp_path: the postgres user cannot enter root's private temporary directories.
        self.root = Path(tempfile.mkdtemp(prefix="mm-pg-"))
        self.dir = self.root / "pgdata"
        self.sockets = self.root / "pgsock"
        self.port = free_port()
        self.log = self.root / "pg.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *cmd: str) -> None:
        runas = [] if os.geteuid() == pwd.getpwnam("postgres").pw_uid else ["runuser", "-u", "postgres", "--"]
        done = subprocess.run([*runas, *cmd], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr or done.stdout}")

    def init(self) -> None:
        self.sockets.mkdir()
        owner = pwd.getpwnam("postgres")
        for d in (self.root, self.sockets):
            os.chown(d, owner.pw_uid, owner.pw_gid)
        self.log.touch()
        os.chown(self.log, owner.pw_uid, owner.pw_gid)
        self._as_postgres(_bin("initdb"), "-D", str(self.dir), "--auth=trust", "-U", "postgres", "--no-sync")
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(_bin("pg_ctl"), "-D", str(self.dir), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._as_postgres(_bin("pg_ctl"), "-D", str(self.dir), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        """Stop the cluster if it runs and delete its files."""
        with contextlib.suppress(Exception):
            self.thaw()
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _pids(self) -> list[int]:
        postmaster = int((self.dir / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def freeze(self) -> None:
        """Every process of the cluster stops: connections stay open, nothing answers."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)


def private_cluster() -> PrivateCluster:
    """A started private cluster, or a skip (a failure under CI) when this machine cannot run one."""
    try:
        pwd.getpwnam("postgres")
        _bin("initdb")
        if os.geteuid() != 0 and os.geteuid() != pwd.getpwnam("postgres").pw_uid:
            raise PermissionError("needs root or the postgres user")
        if shutil.which("pgrep") is None:
            raise FileNotFoundError("pgrep")
    except (KeyError, OSError) as e:
        message = f"cannot run a private PostgreSQL cluster here: {e}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    cluster = PrivateCluster()
    try:
        cluster.init()
    except BaseException:
        cluster.remove()
        raise
    return cluster
