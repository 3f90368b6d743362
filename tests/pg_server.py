"""A throwaway PostgreSQL server for tests: its own data folder, a Unix socket, trust auth, stopped after.

Debian's `postgresql` package provides the binaries (`make system-deps` installs it). PostgreSQL refuses
to run as root, so under root the server runs as the `postgres` user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INSTALL = "apt-get install -y postgresql (or `make system-deps`)"


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresInstance:
    """A running throwaway server: `url_template` for its databases, `stop()`/`start()` to take it away
    and bring it back (as a restart or an outage would), and a role that must give a password."""

    #: a role the server asks a password of (every other role is trusted)
    PASSWORD_ROLE = "alice"

    def __init__(self, bindir: Path, root: Path, prefix: list[str], port: int) -> None:
        self.bindir, self.root, self.prefix, self.port = bindir, root, prefix, port
        self.data, self.sock = root / "data", root / "sock"
        self.url_template = f"postgresql+psycopg://postgres@/{{db}}?host={self.sock}&port={port}"

    def _run(self, *args: object) -> None:
        subprocess.run([*self.prefix, *map(str, args)], check=True, capture_output=True, text=True)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses='' -c fsync=off"
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-o", opts, "-l", self.root / "server.log", "-w",
                  "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def password_url(self, db: str, password: str) -> str:
        """The URL of database `db` as the password role, with `password` in it."""
        return self.url_template.format(db=db).replace("postgres@", f"{self.PASSWORD_ROLE}:{password}@")


@contextmanager
def postgres_instance(role_password: str = "right-pw") -> Iterator[PostgresInstance]:
    """Start a server; yield it. Its role `alice` logs in with `role_password` only, and may create tables."""
    bindir = pg_bin()
    if bindir is None:
        raise RuntimeError(f"PostgreSQL is not installed: {INSTALL}")
    root = Path(tempfile.mkdtemp(prefix="prompthone-pg-", dir="/tmp"))
    (root / "sock").mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for p in (root, root / "sock"):
            os.chown(p, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    pg = PostgresInstance(bindir, root, prefix, _free_port())
    pg._run(bindir / "initdb", "-D", pg.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    hba = pg.data / "pg_hba.conf"  # first match wins: the password role before the trust lines
    rule = f"local all {PostgresInstance.PASSWORD_ROLE} scram-sha-256\n"
    pg._run("sh", "-c", f"printf '{rule}' | cat - {hba} > {hba}.new && mv {hba}.new {hba}")
    pg.start()
    try:
        import psycopg

        admin = pg.url_template.format(db="postgres").replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {PostgresInstance.PASSWORD_ROLE} LOGIN CREATEDB PASSWORD '{role_password}'")
        yield pg
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(pg.data), "-m", "immediate", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server and yield a SQLAlchemy URL template `...{db}...` for a database to create."""
    with postgres_instance() as pg:
        yield pg.url_template


def create_database(url_template: str, name: str, owner: str = "postgres") -> str:
    """Create database `name` on the server (owned by `owner`) and return its URL."""
    import psycopg

    admin = url_template.format(db="postgres").replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    return url_template.format(db=name)
