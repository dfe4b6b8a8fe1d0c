"""A real MLflow tracking server on 127.0.0.1 for tests, started and stopped by the test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from support import HANG_S


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerExited(RuntimeError):
    pass


class MlflowServer:
    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        backend_store_uri: str | None = None,
        serve_artifacts: bool = False,
    ):
        """``backend_store_uri``: a database (PostgreSQL for a team store); SQLite in ``directory``
        by default. ``serve_artifacts``: clients upload artifacts through the server, which keeps
        them in ``directory/artifacts`` (no shared filesystem needed)."""
        self.directory = Path(directory)
        self.chosen_port = port is None  # ours to change if another process takes it first
        self.port = port or free_port()
        self.backend_store_uri = backend_store_uri or f"sqlite:///{self.directory}/server.db"
        self.serve_artifacts = serve_artifacts
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = HANG_S, attempts: int = 3) -> MlflowServer:
        """Start and wait until it answers. A free port can be taken by another process (a second
        suite beside this one) before the server binds it: the server then exits, and it is
        started again on another free port."""
        for attempt in range(attempts):
            try:
                return self._start_once(timeout)
            except ServerExited:
                if not self.chosen_port or attempt == attempts - 1:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> MlflowServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        mlflow_cli = Path(sys.executable).with_name("mlflow")
        self.process = subprocess.Popen(
            [
                str(mlflow_cli),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                self.backend_store_uri,
                *self._artifact_options(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # the server forks workers: stop() kills the whole group
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerExited(f"mlflow server on port {self.port} exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as response:
                    if response.status == 200 and self.process.poll() is None:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("mlflow server did not start in time")

    def _artifact_options(self) -> list[str]:
        if self.serve_artifacts:
            return ["--serve-artifacts", "--artifacts-destination", str(self.directory / "artifacts")]
        return ["--default-artifact-root", str(self.directory / "artifacts")]

    def stop(self) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=HANG_S)
        self.process = None
