"""A real `tailor serve` process on a loopback port, for tests that need the whole
thing: the CLI, uvicorn, real HTTP; or an app object served in a thread of the test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env(data: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "TAILOR_DATA_DIR": str(data),
        "TAILOR_PORT": str(port),
        "TAILOR_HOST": "127.0.0.1",
        "HF_HUB_OFFLINE": "1",
    }


# The server's output goes to a file beside its data folder, never to a pipe: nobody
# reads a pipe while the test runs, and once its buffer is full the server's next log
# line (uvicorn logs every request) blocks its event loop.
_LOGS: dict[int, tuple[Path, int]] = {}  # pid -> (log file, where this start began)


def serve(data: Path, port: int) -> subprocess.Popen[bytes]:
    log = data.with_name(f"{data.name}-serve.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        start = out.tell()
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            env=env(data, port),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _LOGS[proc.pid] = (log, start)
    return proc


def output(proc: subprocess.Popen[bytes]) -> str:
    """What this server process has printed so far."""
    log, start = _LOGS[proc.pid]
    with open(log, "rb") as f:
        f.seek(start)
        return f.read().decode(errors="replace")


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(output(proc) or "server exited")
        try:
            response = httpx.get(f"{base}/readyz", timeout=2)
            if response.status_code == 200:
                return dict(response.json())
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError("server not ready in time")


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    return output(proc)


class InThreadServer:
    """An app object served by uvicorn on a loopback port in a thread of this process:
    real HTTP and keep-alive, with the app's fakes still reachable from the test."""

    def __init__(self, app: Any, port: int | None = None, log_level: str = "warning") -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level=log_level)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self, timeout: float = 60.0) -> str:
        """Serve, and return the base URL once /readyz answers 200."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return self.base
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"in-thread server not ready after {timeout}s")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
