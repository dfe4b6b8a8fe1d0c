"""A throwaway PostgreSQL server on 127.0.0.1 for tests: initdb into a temporary folder, pg_ctl
start on a free port, trust authentication for the local superuser, stopped and removed after.

PostgreSQL refuses to run as root; as root the server runs as the ``postgres`` system user (the
Debian package creates it) in a folder that user owns."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from mlflow_server import free_port
from support import HANG_S

BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


def find_bin_dir() -> Path | None:
    for folder in BIN_DIRS:
        if (Path(folder) / "initdb").is_file():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PostgresUnavailable(RuntimeError):
    """Why PostgreSQL cannot be started here (the test skips with this reason)."""


class PostgresServer:
    def __init__(self, database: str = "mlflow"):
        self.bin_dir = find_bin_dir()
        if self.bin_dir is None:
            raise PostgresUnavailable(f"no initdb in {', '.join(BIN_DIRS)} or on the PATH (apt-get install postgresql)")
        self.run_as: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and there is no 'postgres' user to run the server") from None
            self.run_as = "postgres"
        self.database = database
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="secateurs-pg-"))
        self.data = self.folder / "data"
        self.started = False

    @property
    def uri(self) -> str:
        # SQLAlchemy 2.1 reads plain postgresql:// as psycopg 3; the driver we install is psycopg2
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{self.database}"

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", self.run_as, "--", *command] if self.run_as else command

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(self._command(tool, *args), capture_output=True, text=True, timeout=HANG_S)
        if result.returncode != 0:
            raise PostgresUnavailable(f"{tool} failed: {(result.stderr or result.stdout).strip()[-500:]}")

    def start(self) -> PostgresServer:
        if self.run_as:
            shutil.chown(self.folder, user=self.run_as)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k {self.folder}",
            "start",
        )
        self.started = True
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", self.database)
        return self

    def stop(self) -> None:
        if self.started:
            subprocess.run(
                self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                capture_output=True,
                timeout=HANG_S,
            )
            self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)
