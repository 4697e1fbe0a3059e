"""A throw-away PostgreSQL server for tests: `initdb` + `pg_ctl` from Debian's postgresql package.

The cluster lives in a temporary folder, listens on a Unix socket in that folder only (no TCP:
`listen_addresses=''`), trusts local connections, and is stopped with `pg_ctl stop -m immediate`
and deleted at teardown. PostgreSQL refuses to run as root, so as root the server runs as the
`postgres` user that the Debian package creates (`runuser -u postgres --`). Tests that use it skip,
with the reason, only when the server binaries are absent (`apt-get install postgresql`, which the
Makefile's `system` target does).

    from pg import postgres_url  # noqa: F401  (a fixture: a SQLAlchemy URL to an empty database)
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

DATABASE = "polarkit_test"
PASSWORD = "not-a-secret"  # in the URL to check redaction; local trust auth ignores it


def server_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<ver>/bin holding initdb and pg_ctl (or PATH's), or None."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.parent.name)] or [0],
    )
    if found and (found[-1].parent / "pg_ctl").is_file():
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user() -> tuple[list[str], str | None]:
    """(command prefix, user): as root, run as `postgres` (Debian's package creates it)."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip(
            "running as root and there is no `postgres` user to run the server as "
            "(the Debian postgresql package creates it)"
        )
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", "postgres", "--"], "postgres"


@pytest.fixture(scope="module")
def postgres_url():
    """Start a private PostgreSQL cluster; yield a psycopg2 URL (with a password, to test redaction)."""
    bindir = server_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    try:  # the driver is a dependency: a missing one fails, never skips
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.fail("psycopg2 is missing: pip install psycopg2-binary (a polarkit dependency)")

    prefix, user = _as_server_user()
    base = Path(tempfile.mkdtemp(prefix="polarkit-pg-"))  # short path: a socket path has ~107 bytes
    data, log, port = base / "data", base / "server.log", _free_port()
    if user:
        shutil.chown(base, user=user)
    os.chmod(base, 0o755)

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=timeout, cwd=base)

    out = run(
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-sync",
        "--no-instructions",
    )
    assert out.returncode == 0, f"initdb failed: {out.stderr}"
    opts = f"-c listen_addresses='' -k {base} -p {port} -c fsync=off -c max_connections=40"
    out = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start")
    try:
        assert out.returncode == 0, f"pg_ctl start failed: {out.stderr}\n{log.read_text() if log.exists() else ''}"
        import psycopg2

        conn = psycopg2.connect(host=str(base), port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {DATABASE}")
        conn.close()
        yield f"postgresql+psycopg2://postgres:{PASSWORD}@/{DATABASE}?host={base}&port={port}"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "stop", "-m", "immediate", timeout=60)
        shutil.rmtree(base, ignore_errors=True)
