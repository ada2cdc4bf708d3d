"""The operator CLI as operators run it: `python -m service ...` in a subprocess (the
same `main` as the `tailor` entry point), against a real database and, for `users`,
a real HTTP server. Each command is a fresh interpreter, so only fast commands are run
that way; the parser is also checked in-process for every command's options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.cli import build_parser, main
from tests.conftest import make_settings, wait_ready
from tests.fakes import HashingEmbedder, RecordingBackend
from tests.scripted_server import ScriptedServer
from tests.server_process import InThreadServer, free_port

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_OPTIONS = ("--host", "--port", "--data-dir", "--database-url")


def migrations_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from store.db import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def tailor(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    clean["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "sdk")])
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_command_lists_the_settings_options(tmp_path: Path) -> None:
    helped = tailor("serve", "--help", cwd=tmp_path)
    assert helped.returncode == 0
    for option in SETTINGS_OPTIONS:
        assert option in helped.stdout
    commands = [
        ["bootstrap"], ["migrate"], ["link"], ["doctor"], ["keys"], ["keys", "create"],
        ["keys", "list"], ["keys", "revoke"], ["users"], ["users", "list"],
        ["users", "export"], ["users", "delete"],
    ]  # fmt: skip
    parser = build_parser()
    for command in commands:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([*command, "--help"])
        assert done.value.code == 0
    # and the options reach the settings, before or after the command
    args = parser.parse_args(["--data-dir", "/a", "doctor", "--port", "9"])
    assert (str(args.data_dir), args.port) == ("/a", 9)


def test_help_text_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["users", "list", "--help"])
    out = capsys.readouterr().out
    for option in (*SETTINGS_OPTIONS, "--url", "--api-key", "--limit"):
        assert option in out


def test_bootstrap_says_which_database_it_wrote_to(tmp_path: Path) -> None:
    """Run from another folder with the default (relative) data dir: the output names
    the database under that folder, so a 401 later is not a mystery."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = tailor("bootstrap", "--name", "acme", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    expected = f"sqlite:///{(elsewhere / 'data' / 'tailor.db').resolve()}"
    assert printed["database"] == expected
    assert expected in done.stderr
    assert (elsewhere / "data" / "tailor.db").exists()


def _app(data: Path) -> TestClient:
    app = create_app(make_settings(data), embedder=HashingEmbedder(), backend=RecordingBackend())
    return TestClient(app)


def test_a_locked_out_tenant_gets_a_new_key_from_the_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    boot = tailor("bootstrap", "--name", "acme", "--data-dir", str(data), cwd=tmp_path)
    first = json.loads(boot.stdout)
    auth = {"Authorization": f"Bearer {first['api_key']}"}
    with _app(data) as http:
        wait_ready(http)
        key_id = http.get("/v1/keys", headers=auth).json()[0]["id"]
        assert http.delete(f"/v1/keys/{key_id}", headers=auth).status_code == 204
        assert http.get("/v1/users", headers=auth).status_code == 401  # locked out

    listed = tailor("keys", "list", "--data-dir", str(data), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["id"], r["revoked_at"] is not None) for r in rows] == [(key_id, True)]
    assert "key" not in rows[0] and "key_hash" not in rows[0]
    assert str(data / "tailor.db") in listed.stderr

    created = tailor("keys", "create", "--name", "recovery", "--data-dir", str(data), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    new = json.loads(created.stdout)
    assert new["name"] == "recovery" and new["user_id"] is None
    with _app(data) as http:
        wait_ready(http)
        fresh = {"Authorization": f"Bearer {new['key']}"}
        assert http.get("/v1/users", headers=fresh).status_code == 200
        assert http.get("/v1/users", headers=auth).status_code == 401

    revoked = tailor("keys", "revoke", new["id"], "--data-dir", str(data), cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    with _app(data) as http:
        wait_ready(http)
        assert http.get("/v1/users", headers=fresh).status_code == 401

    unknown = tailor("keys", "revoke", "not-a-uuid", "--data-dir", str(data), cwd=tmp_path)
    assert unknown.returncode == 2 and "keys list" in unknown.stderr
    missing = tailor(
        "keys", "revoke", "00000000-0000-0000-0000-000000000000", "--data-dir", str(data),
        cwd=tmp_path,
    )  # fmt: skip
    assert missing.returncode == 1 and "no such key" in missing.stderr


def test_keys_need_the_tenant_named_when_there_are_several(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")
    assert main(["bootstrap", "--name", "a", "--data-dir", data]) == 0
    assert main(["bootstrap", "--name", "b", "--data-dir", data]) == 0
    second = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert main(["keys", "list", "--data-dir", data]) == 2
    assert "--tenant" in capsys.readouterr().err
    assert main(["keys", "list", "--tenant", second["tenant_id"], "--data-dir", data]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["name"] for line in listed] == ["bootstrap"]
    assert main(["keys", "create", "--expires-in-days", "0", "--data-dir", data]) == 2


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    app = create_app(
        make_settings(tmp_path / "served"), embedder=HashingEmbedder(), backend=RecordingBackend()
    )
    server = InThreadServer(app)
    base = server.start()
    try:
        import tailor_client

        from tests.conftest import ADMIN_TOKEN

        with tailor_client.TailorClient(base) as admin:
            key = admin.create_tenant("acme", admin_token=ADMIN_TOKEN)["api_key"]["key"]
        with tailor_client.TailorClient(base, key) as client:
            for user in ("alice", "bob", "carol"):
                client.create_user(user)
            client.create_instruction("alice", "I avoid gluten.", always_on=True)
        yield base, key
    finally:
        server.stop()


def test_users_list_export_delete_through_a_running_service(
    served: tuple[str, str], tmp_path: Path
) -> None:
    base, key = served
    env = {"TAILOR_API_KEY": key}
    listed = tailor("users", "list", "--url", base, cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [
        "alice", "bob", "carol",
    ]  # fmt: skip
    first = tailor("users", "list", "--limit", "1", "--url", base, cwd=tmp_path, env=env)
    assert [json.loads(line)["id"] for line in first.stdout.splitlines()] == ["alice"]

    out = tmp_path / "alice.json"
    exported = tailor(
        "users", "export", "alice", "--out", str(out), "--url", base, cwd=tmp_path, env=env
    )
    assert exported.returncode == 0, exported.stderr
    document = json.loads(out.read_text())
    assert document["format"] == "tailor-export-v1"
    assert [i["text"] for i in document["instructions"]] == ["I avoid gluten."]

    deleted = tailor("users", "delete", "bob", "--yes", "--url", base, cwd=tmp_path, env=env)
    assert deleted.returncode == 0, deleted.stderr
    again = tailor("users", "delete", "bob", "--yes", "--url", base, cwd=tmp_path, env=env)
    assert again.returncode == 1 and "user_not_found" in again.stderr

    port = base.rsplit(":", 1)[1]  # --host/--port name the service when --url is absent
    left = tailor("users", "list", "--port", port, "--api-key", key, cwd=tmp_path)
    assert [json.loads(line)["id"] for line in left.stdout.splitlines()] == ["alice", "carol"]


def test_users_commands_refuse_without_a_key_or_a_confirmation(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TAILOR_API_KEY", raising=False)
    assert main(["users", "list", "--url", "http://127.0.0.1:9"]) == 2
    assert "TAILOR_API_KEY" in capsys.readouterr().err
    assert main(["users", "delete", "bob", "--api-key", "k"]) == 2
    assert "--yes" in capsys.readouterr().err


def test_doctor_reports_each_check_and_fails_on_any(tmp_path: Path) -> None:
    data = tmp_path / "data"
    tailor("bootstrap", "--name", "acme", "--data-dir", str(data), cwd=tmp_path)
    fake_models = {"TAILOR_EMBEDDER_FACTORY": "tests.fakes:HashingEmbedder"}
    with ScriptedServer() as upstream:
        remote = {
            **fake_models,
            "TAILOR_MODEL_BACKEND": "openai",
            "TAILOR_MODEL_BASE_URL": upstream.base_url,
            "TAILOR_MODEL_NAME": "scripted",
        }
        healthy = tailor("doctor", "--data-dir", str(data), cwd=tmp_path, env=remote)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    lines = healthy.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "database"], ["ok", "embedder"], ["ok", "index"], ["ok", "backend"],
    ]  # fmt: skip
    assert f"head {migrations_head()}" in lines[0] and "test/hashing-v1" in lines[1]

    down = {**remote, "TAILOR_MODEL_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"}
    broken = tailor("doctor", "--data-dir", str(tmp_path / "empty"), cwd=tmp_path, env=down)
    assert broken.returncode == 1
    status = {line.split()[1]: line.split()[0] for line in broken.stdout.splitlines()}
    assert status == {"database": "fail", "embedder": "ok", "index": "ok", "backend": "fail"}
    assert "database, backend" in broken.stderr
    assert not (tmp_path / "empty").exists()  # doctor only reads


@pytest.mark.slow
def test_doctor_loads_the_packaged_models_offline(tmp_path: Path) -> None:
    data = tmp_path / "data"
    tailor("migrate", "--data-dir", str(data), cwd=tmp_path)
    done = tailor("doctor", "--data-dir", str(data), cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[1]: line for line in done.stdout.splitlines()}
    assert "all-MiniLM-L6-v2 loaded offline, dim 384" in lines["embedder"]
    assert "SmolLM2-135M" in lines["backend"] and lines["backend"].startswith("ok")
