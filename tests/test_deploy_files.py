"""The deployment files are checked here, since Docker cannot run in the test
environment: compose.yaml parses and wires PostgreSQL, two replicas and the load
balancer together; the image installs the PostgreSQL driver the URL needs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_compose_runs_two_replicas_on_postgres_behind_a_balancer() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "tailor-1", "tailor-2", "nginx"}
    replicas = [services["tailor-1"], services["tailor-2"]]
    for replica in replicas:
        env = replica["environment"]
        url = make_url(env["TAILOR_DATABASE_URL"].replace("${POSTGRES_PASSWORD:-tailor}", "pw"))
        assert (url.drivername, url.host, url.port, url.database) == (
            "postgresql+psycopg",
            "postgres",
            5432,
            "tailor",
        )
        assert env["TAILOR_ENVIRONMENT"] == "production"
        assert replica["build"] == "."
        assert "ports" not in replica  # reached through the balancer only
    # each replica its own data volume (snapshots), all of them declared
    volumes = [replica["volumes"][0].split(":") for replica in replicas]
    assert [v[1] for v in volumes] == ["/data", "/data"]
    assert len({v[0] for v in volumes}) == 2
    declared = set(_compose()["volumes"])
    assert {v[0] for v in volumes} | {"postgres-data"} <= declared
    # migrations run once: the second replica waits for the first to be healthy
    assert replicas[0]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert replicas[1]["depends_on"]["tailor-1"]["condition"] == "service_healthy"
    assert services["postgres"]["healthcheck"]["test"][0] == "CMD-SHELL"
    # the database password is the same on both sides
    assert (
        "${POSTGRES_PASSWORD:-tailor}" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    )


def test_the_balancer_lists_every_replica() -> None:
    services = _compose()["services"]
    mount = services["nginx"]["volumes"][0].split(":")
    config = (ROOT / mount[0]).read_text()
    upstreams = re.findall(r"^\s*server\s+([\w-]+):8000", config, re.MULTILINE)
    replicas = sorted(name for name in services if name.startswith("tailor-"))
    assert sorted(upstreams) == replicas
    assert services["nginx"]["ports"] == ["8000:8000"]
    assert "proxy_buffering off" in config  # streamed chat answers flow through


def test_the_image_installs_the_postgresql_driver() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'pip install "\.\[postgres\]"', dockerfile)
    assert '"torch==2.13.0"' in dockerfile
    assert "-DGGML_NATIVE=OFF" in dockerfile
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("psycopg") for dep in extras["postgres"])
    for path in ("service", "personalization", "store", "evals", "sdk"):
        assert f"COPY {path} ./{path}" in dockerfile
