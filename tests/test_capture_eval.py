"""The capture suite: its scoring on known captures, its API source against a fake of
the capture contract, the guard's measurement, and the CLI end to end with the
detector as the source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evals.capture_client import CaptureClient
from evals.capture_data import CAPTURE_DATA, CaptureCase, load_split
from evals.capture_eval import (
    CaptureConfig,
    api_source,
    guard_report,
    markdown,
    metrics,
    run,
    score,
    summarize,
)
from evals.cli import main
from evals.client import ServiceError
from personalization.messages import ChatMessage
from tests.fakes import HashingEmbedder, RecordingBackend

EMBEDDER = HashingEmbedder(dim=256)


def case(kind: str, gold: str | None, *said: str) -> CaptureCase:
    conversation: list[ChatMessage] = []
    for text in said:
        conversation += [ChatMessage("user", text), ChatMessage("assistant", "Okay.")]
    return CaptureCase(f"dev/{kind}/t/{len(said)}", kind, "t", tuple(conversation), gold)  # type: ignore[arg-type]


def test_scoring_counts_matches_extras_and_filler_captures() -> None:
    cases = [
        case("explicit", "I am vegan.", "I'm vegan."),
        case("explicit", "I love jazz.", "I love jazz."),
        case("explicit", "I hate running.", "I hate running."),
        case("choice", "I avoid shellfish.", "I'll take the chicken."),
        case("negative", None, "Do you like jazz?"),
        case("negative", None, "My friend is vegan."),
        case("filler", None, *["What time is it?"] * 50),
        case("filler", None, *["Why is the sky blue?"] * 50),
    ]
    captured = [
        ["I am vegan."],  # a match
        ["I love jazz.", "I never know what a Fahrenheit means."],  # a match and an extra
        [],  # a miss
        [],
        [],
        ["My friend is vegan."],  # a false capture from a negative
        ["What time is it."],  # one false capture in 100 filler turns
        [],
    ]
    found = summarize(score(cases, captured, EMBEDDER))
    assert (found["explicit_recall"]["successes"], found["explicit_recall"]["n"]) == (2, 3)
    assert found["implicit_recall"]["value"] == 0.0
    # 5 statements captured outside implicit items, 2 of them the gold of their conversation
    assert (found["precision"]["successes"], found["precision"]["n"]) == (2, 5)
    assert found["false_per_100_filler_turns"] == 1.0 and found["filler_turns"] == 100
    assert found["negatives_clean"]["value"] == 0.5
    assert [m["gold"] for m in found["missed"]] == ["I hate running."]
    extras = {f["key"]: f["captured"] for f in found["false_captures"]}
    assert extras["dev/explicit/t/1"] == ["I never know what a Fahrenheit means."]


class FakeCaptureApi:
    """The capture contract in memory: a submitted conversation is pending on the first
    poll, running on the second, then done with one suggestion per user message that
    starts with "I "."""

    def __init__(self, final: str = "done") -> None:
        self.final = final
        self.users: dict[str, list[dict[str, Any]]] = {}
        self.polls: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []
        self.made: list[str] = []

    def fresh_user(self, user_id: str) -> None:
        self.users[user_id] = []

    def delete_user(self, user_id: str) -> None:
        self.users.pop(user_id, None)

    def submit_conversation(self, user: str, messages: Any) -> Any:
        self.calls.append(("POST", "conversations"))
        made = []
        for m in messages:
            if m["role"] == "user" and m["content"].startswith("I "):
                row = {"id": f"s{len(self.users[user])}", "text": m["content"]}
                self.users[user].append({**row, "quote": m["content"], "status": "pending"})
                made.append(row["id"])
        self.polls[user] = 0
        self.made = made
        return {"id": "c1", "status": "pending"}

    def get_conversation(self, user: str, capture_id: str) -> Any:
        self.calls.append(("GET", "conversations"))
        self.polls[user] += 1
        status = (
            ["pending", "running"][self.polls[user] - 1] if self.polls[user] < 3 else self.final
        )
        return {"status": status, "suggestions": self.made if status == "done" else []}

    def list_suggestions(self, user: str, *, status: Any = "pending") -> Any:
        self.calls.append(("GET", "suggestions"))
        assert status == "pending"
        return {"data": [r for r in self.users[user] if r["status"] == "pending"]}

    def accept_suggestion(self, user: str, suggestion_id: str) -> Any:
        self.calls.append(("POST", "accept"))
        for row in self.users[user]:
            if row["id"] == suggestion_id:
                row["status"] = "accepted"
                return {"suggestion": row}
        raise ServiceError(404, "not_found", suggestion_id)


def test_the_api_source_submits_waits_and_reads_the_suggestions() -> None:
    api = FakeCaptureApi()
    source = api_source(api, CaptureClient(api, poll_s=0))
    texts = source(case("explicit", "I love jazz.", "Hello!", "I love jazz."))
    assert texts == ["I love jazz."]
    assert [c[0] for c in api.calls] == ["POST", "GET", "GET", "GET", "GET"]
    assert api.users == {}  # the conversation's user is removed afterwards


def test_a_failed_capture_is_an_error_not_a_silent_zero() -> None:
    api = FakeCaptureApi(final="failed")
    source = api_source(api, CaptureClient(api, poll_s=0))
    with pytest.raises(RuntimeError, match="ended failed"):
        source(case("explicit", "I love jazz.", "I love jazz."))
    assert api.users == {}


def test_accept_and_a_wait_that_never_ends() -> None:
    api = FakeCaptureApi()
    client = CaptureClient(api, poll_s=0)
    api.fresh_user("u")
    status, found = client.capture("u", [ChatMessage("user", "I hate wool.")])
    assert status == "done" and [s.text for s in found] == ["I hate wool."]
    client.accept("u", found[0].id)
    assert client.pending("u") == []
    stuck = FakeCaptureApi(final="running")
    stuck.fresh_user("u")
    with pytest.raises(TimeoutError):
        CaptureClient(stuck, poll_s=0).capture("u", [ChatMessage("user", "x")], timeout_s=0.0)


def test_guard_report_counts_both_kinds_of_error(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    rows = [
        {"text": "I am allergic to peanuts.", "preference": True},
        {"text": "I am sorry to say I hate olives.", "preference": True},  # rejected
        {
            "text": "You're a helpful AI assistant named SmolLM.",
            "preference": False,
            "source": "smollm",
        },
        {"text": "I'd be happy to help!", "preference": False},
    ]
    path.write_text(json.dumps(rows))
    found = guard_report(path)
    assert found["precision"]["value"] == 1.0 and found["recall"]["value"] == 0.5
    assert found["smollm_junk_rejected"] == {**found["smollm_junk_rejected"], "n": 1, "value": 1.0}
    assert [e["text"] for e in found["errors"]] == ["I am sorry to say I hate olives."]


def test_the_shipped_guard_set_is_measured() -> None:
    found = guard_report()
    assert found["recall"]["n"] >= 150 and found["smollm_junk_rejected"]["n"] >= 10


def test_splits_load_and_a_detector_run_reports_every_figure_per_split() -> None:
    dev = load_split(CAPTURE_DATA, "dev")
    kinds = {c.kind for c in dev}
    assert kinds == {"explicit", "choice", "persona", "negative", "filler"}
    assert len({c.topic for c in dev if c.kind == "explicit"}) >= 15
    report = run(lambda c: [], EMBEDDER, CaptureConfig(splits=("dev",)), progress=False)
    entry = report["splits"]["dev"]
    assert entry["explicit_recall"]["value"] == 0.0 and entry["false_per_100_filler_turns"] == 0.0
    names = {m["name"]: m for m in metrics(report)}
    assert names["capture.dev.false_per_100_filler_turns"]["better"] == "lower"
    assert "capture.guard.recall" in names
    assert "| dev |" in markdown(report)


def test_capture_suite_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["run", "--suite", "capture", "--capture-source", "detector", "--in-process"]
    with pytest.raises(SystemExit, match="capture-limit"):
        main([*args, "--capture-limit", "0", "--out", str(out)])
    code = main(
        [*args, "--no-progress", "--out", str(out)],
        embedder=HashingEmbedder(dim=256),
        backend=RecordingBackend(),
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    suite = results["suites"]["capture"]
    # every split by default, the blind one (heldout4) as the headline
    assert set(suite["splits"]) == {"dev", "heldout", "heldout2", "heldout3", "heldout4"}
    assert suite["headline"] == "heldout4" and suite["config"]["source"] == "detector"
    # patterns alone (the fake embedder is not the classifier's): most explicit items
    assert suite["splits"]["heldout"]["explicit_recall"]["value"] > 0.5
    assert any(m["name"] == "capture.heldout.explicit_recall" for m in results["metrics"])
    quick = tmp_path / "quick"
    code = main(
        [*args, "--capture-limit", "2", "--splits", "dev", "--no-progress", "--out", str(quick)],
        embedder=HashingEmbedder(dim=256),
        backend=RecordingBackend(),
    )
    small = json.loads((quick / "results.json").read_text())["suites"]["capture"]["splits"]
    assert code == 0 and set(small) == {"dev"} and small["dev"]["conversations"] == 10
    assert "capture (detector" in capsys.readouterr().out


class FakeTailor:
    """What PrefEvalRun's tailor arm calls: users, instructions, and capture's calls."""

    def __init__(self) -> None:
        self.api = FakeCaptureApi()
        self.instructions: list[tuple[str, str, bool]] = []

    def fresh_user(self, user_id: str) -> None:
        self.api.fresh_user(user_id)

    def add_instruction(self, user_id: str, text: str, **extra: Any) -> str:
        self.instructions.append((user_id, text, bool(extra.get("always_on"))))
        return "i1"


@pytest.mark.parametrize("arm", ["tailor", "tailor-always"])
def test_prefeval_tailor_arm_captures_implicit_items_through_the_api(
    arm: str, tmp_path: Path
) -> None:
    from evals.cache import ItemCache
    from evals.prefeval.arms import Retriever
    from evals.prefeval.data import load_items
    from evals.prefeval.runner import PrefEvalConfig, PrefEvalRun

    tailor = FakeTailor()
    run_ = PrefEvalRun(
        tailor, PrefEvalConfig(), ItemCache(tmp_path / "c.jsonl"), Retriever(EMBEDDER), None
    )  # type: ignore[arg-type]
    choice = next(i for i in load_items() if i.form == "choice")
    explicit = next(i for i in load_items() if i.form == "explicit")
    profile = run_._profile(choice, arm)
    # the fake suggests each user message starting with "I " (the choice is one)
    said = [
        m.content for m in choice.conversation if m.role == "user" and m.content.startswith("I ")
    ]
    assert said and profile["instruction"] == " ".join(said) and profile["error"] is None
    user = profile["user"]
    if arm == "tailor":
        assert all(r["status"] == "accepted" for r in tailor.api.users[user])
        assert tailor.instructions == []
    else:
        assert tailor.instructions == [(user, t, True) for t in said]
    # explicit items keep the stated preference, written as an instruction
    assert run_._profile(explicit, arm)["instruction"] == explicit.preference
    assert tailor.instructions[-1][1] == explicit.preference
