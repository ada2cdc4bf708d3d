"""The nightly job as operators run it: `tailor serve` in its own process with the
embedded model and MiniLM, and `tailor-eval run --service URL` talking to it over a
real socket, every suite on the shipped data (small N to fit CI)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from evals.capture_data import CAPTURE_DATA, load_split
from tests import server_process as srv

pytestmark = pytest.mark.slow


def test_nightly_suite_against_a_real_server(tmp_path: Path) -> None:
    data, port = tmp_path / "data", srv.free_port()
    boot = subprocess.run(
        [sys.executable, "-m", "service", "bootstrap", "--name", "nightly"],
        env=srv.env(data, port),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = json.loads(boot.stdout)["api_key"]
    base = f"http://127.0.0.1:{port}"
    proc = srv.serve(data, port)
    out = tmp_path / "run"
    try:
        srv.wait_ready(base, proc)
        command = [
            sys.executable,
            "-m",
            "evals",
            "run",
            "--suite",
            "nightly",
            "--service",
            base,
            "--api-key",
            key,
            "--out",
            str(out),
            "--limit",
            "1",
            "--turns",
            "0,10",
            "--generation-max-tokens",
            "32",
            "--cipher-rounds",
            "2",
            "--cipher-max-tokens",
            "24",
            "--scale-limit",
            "40",
            "--capture-limit",
            "3",
            "--no-progress",
        ]
        done = subprocess.run(
            command, env=srv.env(data, port), capture_output=True, text=True, timeout=1200
        )
        users = httpx.get(f"{base}/v1/users", headers={"Authorization": f"Bearer {key}"})
    finally:
        log = srv.stop(proc)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in log
    results = json.loads((out / "results.json").read_text())
    assert results["service"] == base
    pe = results["suites"]["prefeval"]
    assert pe["config"]["model"].startswith("HuggingFaceTB/SmolLM2")
    for task in ("mcq", "generation"):
        for arm in ("zero-shot", "reminder", "rag", "tailor"):
            for turns in ("0", "10"):
                cell = pe["tasks"][task][arm][turns]
                assert cell["n"] == 3  # one item per form
                assert 0.0 <= cell["value"] <= 1.0 and cell["ci95"][0] <= cell["value"]
    generation = pe["tasks"]["generation"]["zero-shot"]["0"]["error_types"]
    assert sum(generation.values()) == 3  # every answer judged into one type
    assert pe["judge_agreement"]["violation"]["n"] == 16
    cipher = results["suites"]["cipher"]
    assert [m["rounds"] for m in cipher["methods"]] == [2, 2, 2]
    selection = results["suites"]["selection"]
    # the default policy fills up to 10 conditional items in rank order: recall, not F1
    assert selection["recall"] >= 0.9 and selection["always_on_recall"] == 1.0
    # capture over the product path: up to 3 conversations of each of 5 kinds per split
    capture = results["suites"]["capture"]
    assert capture["config"]["source"] == "api"
    for split, entry in capture["splits"].items():
        kinds = Counter(c.kind for c in load_split(CAPTURE_DATA, split))
        assert len(kinds) == 5 and entry["conversations"] == sum(min(3, n) for n in kinds.values())
    scale = results["suites"]["selection-at-scale"]
    # every split by default, the blind heldout2 the headline; one profile of 40 each
    assert scale["headline"] == "heldout2" and list(scale["splits"]) == [
        "dev",
        "heldout",
        "heldout2",
    ]
    assert all(found["sizes"]["50"]["turns"] == 40 for found in scale["splits"].values())
    assert "mcq accuracy" in done.stdout and "selection: precision" in done.stdout
    assert (out / "report.html").read_text().count("<svg") >= 4
    assert users.json()["total"] == 0  # the job removed the users it made
