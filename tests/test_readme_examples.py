"""The README's HTTP examples run as written: every `sh` block that calls the API with
curl, and the OpenAI-client snippet, run in order against a real server on a loopback
port (uvicorn in a thread; the test's fake embedder and model). Only the host and port
are rewritten, `KEY` is a real key, and the `<...>` placeholders are replaced with ids
of objects the earlier examples created. curl runs with `--fail-with-body`, so any
answer other than 2xx fails the example."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.fakes import HashingEmbedder, RuleBackend
from tests.server_process import InThreadServer

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(sh|python)\n(.*?)```", README, re.S)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    app = create_app(
        make_settings(tmp_path / "data", rate_limit_per_minute=0),
        embedder=HashingEmbedder(),
        backend=RuleBackend(),
    )
    running = InThreadServer(app)
    yield running.start(timeout=60)
    running.stop()


def run_sh(block: str, base: str, key: str) -> str:
    host = base.removeprefix("http://")
    lines = [line for line in block.splitlines() if not line.startswith("KEY=")]
    script = "\n".join(lines).replace("localhost:8000", host)
    script = script.replace("curl -s ", "curl -sS --fail-with-body ")
    done = subprocess.run(
        [
            "bash",
            "-euo",
            "pipefail",
            "-c",
            f'KEY="{key}"\nH="Authorization: Bearer $KEY"\n{script}',
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return done.stdout


def test_readme_examples_run_as_written(server: str) -> None:
    made = httpx.post(
        f"{server}/v1/tenants",
        json={"name": "my-app"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    key = made.json()["api_key"]["key"]
    api = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def first_preference() -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            items = api.get("/v1/users/user-42/preferences").json()["items"]
            if items:
                return str(items[0]["id"])
            time.sleep(0.1)
        raise AssertionError("no preference was inferred from the README's edit")

    def session() -> str:
        return str(api.post("/v1/users/user-42/sessions").json()["id"])

    def instruction_with_two_versions() -> str:
        first = api.get("/v1/users/user-42/instructions").json()["items"][0]
        changed = api.patch(
            f"/v1/users/user-42/instructions/{first['id']}", json={"text": "I avoid gluten and rye"}
        )
        assert changed.status_code == 200, changed.text
        return str(first["id"])

    def pending_suggestion() -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            items = api.get("/v1/users/user-42/suggestions").json()["data"]
            if items:
                assert "allergic to peanuts" in items[0]["quote"]
                return str(items[0]["id"])
            time.sleep(0.1)
        raise AssertionError("no suggestion was captured from the README's conversation")

    # the placeholders an example may hold, by a line that marks its block
    placeholders: dict[str, tuple[str, Callable[[], str]]] = {
        "/preferences/<preference id>": ("<preference id>", first_preference),
        "/sessions/<id>": ("<id>", session),
        "/instructions/<id>/restore": ("<id>", instruction_with_two_versions),
        "/suggestions/<suggestion id>/accept": ("<suggestion id>", pending_suggestion),
    }
    ran: list[str] = []
    for kind, block in BLOCKS:
        if kind == "python" and "from openai import OpenAI" in block:
            code = block.replace("http://127.0.0.1:8000/v1", f"{server}/v1")
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(code, {"KEY": key})
            assert "profile_items" in out.getvalue(), out.getvalue()
            ran.append("openai client")
            continue
        if kind != "sh" or "curl " not in block or "localhost:8000" not in block:
            continue
        for marker, (placeholder, resolve) in placeholders.items():
            if marker in block:
                block = block.replace(placeholder, resolve())
        commands = [line for line in block.splitlines() if not line.startswith("#")]
        assert not any(re.search(r"<[a-z ]+>", line) for line in commands), block
        output = run_sh(block, server, key)
        ran.append(block.splitlines()[0])
        if "/context" in block:
            assert '"system_message"' in output and "I avoid gluten" in output
        if "/accept" in block:
            assert '"source":"conversation"' in output.replace(" ", ""), output
        if "/preferences/" in block:
            assert '"status":"accepted"' in output.replace(" ", "")
    # the quickstart, chat, edits, preference PATCH, sessions and restore examples all ran
    assert len(ran) >= 6, ran
