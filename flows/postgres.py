"""A PostgreSQL database for the Prefect server, from Debian's `postgresql` package.

`narrator stack --postgres` and the tests run the Prefect server on it instead of SQLite,
whose single writer lock answers "database is locked" (503) under a large batch or several
workers. The cluster lives in one folder (made with `initdb` on first use), listens on
127.0.0.1 only with trust authentication (local use: production runs a managed PostgreSQL
with a password, deployments/operations.md), and stops with `stop()`. Run as root, the
server runs as Debian's `postgres` user, as PostgreSQL refuses to run as root.
"""

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gpu_worker.errors import PermanentError

DATABASE = "prefect"
USER = "prefect"


def _bin(name: str) -> str:
    """A PostgreSQL program: the newest under Debian's /usr/lib/postgresql, else on PATH
    (Debian's /usr/bin/psql is a wrapper that wants a cluster of its own configured)."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3])
    )
    found = str(versions[-1]) if versions else shutil.which(name)
    if not found:
        raise PermanentError(
            f"PostgreSQL's {name} is not installed; install it with `apt-get install postgresql`"
        )
    return found


@dataclass
class Postgres:
    """A running cluster: where it listens, and its server process."""

    data: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """The Prefect server's PREFECT_SERVER_DATABASE_CONNECTION_URL."""
        return f"postgresql+asyncpg://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def stop(self) -> None:
        """A fast shutdown (SIGINT: open transactions are rolled back), 30 s at most."""
        if self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _as_owner(data: Path) -> dict[str, object]:
    """subprocess arguments that run a PostgreSQL program as the cluster's owner: this user,
    or, for root, Debian's `postgres` user (the folder is given to it, and the folders above
    it made traversable)."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        raise PermanentError(
            "PostgreSQL does not run as root and there is no postgres user; "
            "install Debian's postgresql package, or run as another user"
        ) from None
    if data.stat().st_uid != owner.pw_uid:  # a new folder (initdb fills it as the owner)
        for path in [data, *data.rglob("*")]:
            os.chown(path, owner.pw_uid, owner.pw_gid)
    for parent in data.resolve().parents:  # it must reach its folder: traverse, not list
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


def start(data: Path, port: int, log: Path, timeout: float = 60) -> Postgres:
    """Start the cluster in `data` (created if empty) on 127.0.0.1:`port`, with the
    `prefect` database; its log goes to `log`."""
    data.mkdir(parents=True, exist_ok=True)
    owner = _as_owner(data)
    if not (data / "PG_VERSION").exists():
        made = subprocess.run(
            [_bin("initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8"],
            capture_output=True,
            **owner,  # type: ignore[call-overload]
        )
        if made.returncode != 0:
            raise PermanentError(f"initdb failed in {data}: {made.stderr.decode()[-300:]}")
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [_bin("postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
             "-k", str(data), "-c", "max_connections=200"],
            stdout=out, stderr=out, **owner,  # type: ignore[call-overload]
        )  # fmt: skip
    cluster = Postgres(data, port, process)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise PermanentError(
                f"PostgreSQL exited ({process.returncode}); see {log} (is port {port} taken?)"
            )
        ready = subprocess.run(
            [_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        )
        if ready.returncode == 0:
            break
        if time.monotonic() > deadline:
            cluster.stop()
            raise PermanentError(f"PostgreSQL did not accept connections within {timeout:.0f} s")
        time.sleep(0.3)
    made = subprocess.run(
        [_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE],
        capture_output=True,
    )
    if made.returncode != 0 and b"already exists" not in made.stderr:
        cluster.stop()
        raise PermanentError(f"createdb failed: {made.stderr.decode()[-300:]}")
    return cluster
