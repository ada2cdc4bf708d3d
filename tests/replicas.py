"""Several real `tailor serve` processes on one PostgreSQL database, each with its own
data folder (snapshots) and port: what a deployment behind a load balancer looks like.
Tests that need it import the `replicas` fixture from here."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests import server_process as srv
from tests.conftest import ADMIN_TOKEN
from tests.postgres import PostgresServer

FAST_EMBEDDER = "tests.fakes:HashingEmbedder"


@dataclass
class Replica:
    data: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    logs: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        """Output goes to a file, not a pipe: nobody reads a pipe while the process
        runs, and a full pipe would block the server mid-test."""
        return self.data.with_name(f"{self.data.name}.log")

    def start(self, *, wait: bool = True) -> None:
        assert self.proc is None, "already running"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service", "serve"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 120) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._collect()
                raise AssertionError(f"replica exited:\n{self.logs[-1]}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"replica not ready in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def _collect(self) -> None:
        self.logs.append(self.output())
        self.proc = None

    def stop(self) -> str:
        """SIGTERM and wait; returns the process's output (also kept in `logs`)."""
        if self.proc is None:
            return ""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self._collect()
        return self.logs[-1]

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self._collect()

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, headers: dict[str, str] | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers=headers or {}, timeout=30)


@dataclass
class Cluster:
    database_url: str
    replicas: list[Replica]

    def tenant(self, name: str = "acme") -> dict[str, str]:
        """A tenant made through the first replica; returns its auth headers."""
        response = httpx.post(
            f"{self.replicas[0].base}/v1/tenants",
            json={"name": name},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['api_key']['key']}"}

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()

    def logs(self) -> str:
        return "\n".join(log for r in self.replicas for log in r.logs)


def start_cluster(
    server: PostgresServer,
    root: Path,
    count: int = 2,
    *,
    embedder_factory: str | None = FAST_EMBEDDER,
    **settings: str,
) -> Cluster:
    """`count` replicas on a fresh database. `settings` are extra TAILOR_* variables
    (e.g. snapshot_interval_s="1"); `embedder_factory=None` uses the packaged MiniLM."""
    url = server.new_database()
    replicas = []
    for n in range(count):
        port = srv.free_port()
        data = root / f"replica{n}"
        env = srv.env(data, port)
        env.update(
            {
                "TAILOR_DATABASE_URL": url,
                "TAILOR_ADMIN_TOKEN": ADMIN_TOKEN,
                "TAILOR_RATE_LIMIT_PER_MINUTE": "0",
            }
        )
        if embedder_factory:
            env["TAILOR_EMBEDDER_FACTORY"] = embedder_factory
        env.update({f"TAILOR_{k.upper()}": v for k, v in settings.items()})
        replicas.append(Replica(data=data, port=port, env=env))
    cluster = Cluster(database_url=url, replicas=replicas)
    try:
        for replica in replicas:  # one at a time: the first one runs the migrations
            replica.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture
def replicas(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Cluster]:
    """Two replicas with the fast embedder on one fresh PostgreSQL database."""
    cluster = start_cluster(postgres_server, tmp_path)
    yield cluster
    cluster.stop()
    assert "Traceback" not in cluster.logs(), cluster.logs()
