"""Screenshots of a sweep in the MLflow UI, taken with headless Chromium (for docs/ and README).

    python tools/mlflow_screenshot.py                       # the newest sweep in outputs/mlflow.db
    python tools/mlflow_screenshot.py --run-id <parent run id> --uri sqlite:///path/mlflow.db

Starts ``mlflow ui`` on 127.0.0.1 (a free port) and drives headless Chromium through its DevTools
protocol. It opens the link ``make ui`` prints (``framework/tracking/ui_view.py``: the experiment's
training runs with the key columns, sweeps nested under their parent runs) with no clicks, and saves the runs table
with the sweep collapsed (its parent row shows the best job), then expanded to its jobs, and the
parent run's summary plot: ``docs/sweep_runs_collapsed.png``, ``docs/sweep_runs.png`` and
``docs/sweep_parent_summary.png``. Needs a ``chromium`` (or
``chromium-browser``, ``google-chrome``) on the PATH, e.g. ``apt-get install chromium``; nothing
else in the project uses it, and ``make test`` does not run this.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's framework/ (the runs view it writes and links to)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(uri: str, port: int) -> subprocess.Popen:
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    process = subprocess.Popen(
        [str(mlflow_cli), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"error: mlflow ui exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return process
        except OSError:
            time.sleep(0.5)
    raise SystemExit("error: mlflow ui did not answer within 120 s")


class DevTools:
    """Just enough of the Chrome DevTools Protocol (over a WebSocket, stdlib only) to open a page,
    click in it and capture it: the runs table needs clicks to expand the sweep and add columns."""

    def __init__(self, ws_url: str):
        host_port, path = ws_url[len("ws://") :].split("/", 1)
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        if b" 101 " not in response.split(b"\r\n")[0]:
            raise RuntimeError(f"DevTools refused the WebSocket: {response[:200]!r}")
        self.last_id = 0

    def _send(self, text: str) -> None:
        data = text.encode()
        header = bytes([0x81])  # one final text frame; a client masks what it sends
        if len(data) < 126:
            header += bytes([0x80 | len(data)])
        elif len(data) < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(data))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(data))
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            data += chunk
        return data

    def _receive(self) -> str:
        message = b""
        while True:
            first, second = self._exactly(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._exactly(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._exactly(8))[0]
            message += self._exactly(length)
            if first & 0x80:  # the final fragment
                return message.decode()

    def call(self, method: str, **params):
        self.last_id += 1
        self._send(json.dumps({"id": self.last_id, "method": method, "params": params}))
        while True:  # events arrive in between; the answer carries our id
            reply = json.loads(self._receive())
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def click(self, selector: str, text: str | None = None) -> bool:
        """Click the first element matching ``selector`` (whose text is ``text``, if given)."""
        match = f"e => e.textContent.trim() === {json.dumps(text)}" if text is not None else "e => true"
        return bool(
            self.evaluate(
                f"(() => {{ const e = Array.from(document.querySelectorAll({json.dumps(selector)})).find({match});"
                " if (e) e.click(); return !!e; })()"
            )
        )

    def capture(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))


def open_browser(browser: str, profile: str, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--window-size=1900,900",
            f"--remote-debugging-port={port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def page_of(port: int) -> DevTools:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as response:
                pages = [p for p in json.load(response) if p["type"] == "page"]
            if pages:
                return DevTools(pages[0]["webSocketDebuggerUrl"])
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("error: headless Chromium did not open its DevTools port within 60 s")


def visit(tab: DevTools, url: str, ready: str, settle_s: float = 3.0, timeout_s: float = 120.0) -> None:
    """Open ``url`` and wait until ``ready`` (a CSS selector) is on the page: the UI is a
    single-page app that fetches after it loads, slowly on a busy machine."""
    tab.call("Page.navigate", url=url)
    deadline = time.monotonic() + timeout_s
    while not tab.evaluate(f"!!document.querySelector({json.dumps(ready)})"):
        if time.monotonic() > deadline:
            raise SystemExit(f"error: {url} showed no {ready} within {timeout_s:.0f} s")
        time.sleep(1)
    time.sleep(settle_s)
    tab.click('[data-component-id="mlflow.assistant.chat_panel.close"]')  # the assistant panel hides the table


def take_screenshots(browser: str, ui_port: int, experiment_id: str, run_id: str, out: Path) -> None:
    from framework.tracking.ui_view import runs_view_url

    # workflowType=machine_learning: the "Model training" side of the UI (runs and metrics)
    base = f"http://127.0.0.1:{ui_port}/#/experiments/{experiment_id}"
    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        chrome = open_browser(browser, profile, port)
        try:
            tab = page_of(port)
            tab.call("Page.enable")
            # the link `make ui` prints: the experiment's shared view (columns, sort) with no clicks;
            # collapsed, the parent row shows the best job's figures
            visit(tab, runs_view_url(f"http://127.0.0.1:{ui_port}", experiment_id), ready=".ag-row")
            tab.capture(out / "sweep_runs_collapsed.png")
            tab.click('[data-component-id$="runnamecellrenderer.tsx_46"]')  # expand the sweep: its jobs
            time.sleep(2)
            tab.capture(out / "sweep_runs.png")
            visit(
                tab,
                f"{base}/runs/{run_id}/artifacts/summary/sweep_pareto.png?workflowType=machine_learning",
                ready="main img, [class*=artifact] img, img[alt]",
            )
            tab.capture(out / "sweep_parent_summary.png")
        finally:
            os.killpg(chrome.pid, signal.SIGKILL)
            chrome.wait(timeout=30)


def newest_parent(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.`sweep.role` = 'parent'",
        order_by=["start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise SystemExit(f"error: no sweep parent run in {uri}; run a multirun first (python run.py -m ...)")
    return runs[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default=f"sqlite:///{ROOT}/outputs/mlflow.db")
    parser.add_argument("--run-id", default=None, help="the sweep's parent run (default: the newest)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        print("error: no chromium on the PATH; install one (apt-get install chromium)", file=sys.stderr)
        return 2
    from mlflow.tracking import MlflowClient

    from framework.tracking.ui_view import write_runs_view

    client = MlflowClient(args.uri)
    parent = client.get_run(args.run_id) if args.run_id else newest_parent(args.uri)
    experiment_id, run_id = parent.info.experiment_id, parent.info.run_id
    write_runs_view(client, experiment_id)  # a store made before the view existed gets it too
    port = free_port()
    ui = start_ui(args.uri, port)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        take_screenshots(browser, port, experiment_id, run_id, args.out)
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
    for name in ("sweep_runs_collapsed.png", "sweep_runs.png", "sweep_parent_summary.png"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
