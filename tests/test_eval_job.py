"""The whole evaluation job through its CLI, against a real in-process Tailor (routes,
store, index, worker) with a scripted model whose behaviour is known: it follows a
preference only when the preference's words are in its context. So the figures are
predictable: every arm is right while the history still holds the preference, only
the tailor arm stays right once the history is cut to the window."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from evals.cli import REGRESSED, main
from evals.prefeval.data import load_items, shuffled_options
from evals.prefeval.judge import load_labelled
from personalization.backends import Completion, GenerationSettings
from personalization.messages import ChatMessage
from personalization.statement_extractor import SYSTEM as EXTRACTOR_PROMPT
from tests.fakes import HashingEmbedder, RecordingBackend

ITEMS = load_items()


class Mind(RecordingBackend):
    """Extracts an implicit item's preference from its conversation (capture's
    extractor prompt, answered in its JSON shape, quoting the user); answers a question
    the preferred way iff the preference text is in its context (history, profile
    block, quoted excerpts);
    judges say yes to 'helpful' and no to everything else."""

    @property
    def model_id(self) -> str:
        return "test/mind"

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        self.received.append(list(messages))
        last = messages[-1].content
        seen = "\n".join(m.content for m in messages)
        text = "A"
        if messages[0].content == EXTRACTOR_PROMPT:
            item = next(i for i in ITEMS if i.conversation[0].content in last)
            quote = item.conversation[0].content
            found = [{"text": item.preference, "quote": quote, "confidence": 0.9}]
            text = json.dumps({"preferences": found})
        elif last.startswith("You are grading"):
            text = "yes" if "real attempt" in last else "no"
        else:
            for item in ITEMS:
                if item.question in last and item.options and item.preference in seen:
                    found = re.search(r"([ABCD])\. " + re.escape(item.options[0]), last)
                    text = found.group(1) if found else item.options[0]
        return Completion(
            text=text,
            finish_reason="stop",
            model=self.model_id,
            prompt_tokens=10,
            completion_tokens=1,
        )


def prefeval(out: Path, options: str = "") -> list[str]:
    """`tailor-eval run --suite prefeval` in-process into `out`, plus `options`."""
    return [
        "run",
        "--suite",
        "prefeval",
        "--in-process",
        "--no-progress",
        "--out",
        str(out),
        *options.split(),
    ]


def run_cli(args: list[str], backend: Any = None) -> int:
    return main(args, embedder=HashingEmbedder(dim=1024), backend=backend or Mind())


@pytest.fixture(autouse=True)
def _select_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    # The hashing embedder is no judge of meaning: let selection take any instruction,
    # so these tests measure the pipeline (real selection is measured with MiniLM).
    monkeypatch.setenv("TAILOR_SELECTION_THRESHOLD", "0")


def test_prefeval_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = prefeval(out, "--turns 0,70 --context-window 2048")
    assert run_cli(args) == 0
    results = json.loads((out / "results.json").read_text())
    pe = results["suites"]["prefeval"]
    assert pe["config"]["model"] == "test/mind" and pe["config"]["items"] == 24
    mcq = pe["tasks"]["mcq"]
    for arm in ("zero-shot", "reminder", "rag", "tailor"):
        assert mcq[arm]["0"]["n"] == 24 and mcq[arm]["0"]["truncated"] == 0
        assert mcq[arm]["70"]["truncated"] == 24 and mcq[arm]["70"]["filler_repeated"] == 24
    # The tailor arm: the profile carries the preference whatever the history holds.
    assert mcq["tailor"]["0"]["value"] == 1.0 and mcq["tailor"]["70"]["value"] == 1.0
    assert mcq["tailor"]["70"]["profile_used"] == 24
    # Baselines: explicit items are stated in the history, implicit ones only implied,
    # so the scripted model guesses "A" for those, and for everything once it is cut.
    guess = {i.key: shuffled_options(i, 0)[1] == 0 for i in ITEMS}
    explicit_guesses = sum(v for k, v in guess.items() if k.startswith("explicit/"))
    implicit_guesses = sum(v for k, v in guess.items() if not k.startswith("explicit/"))
    assert mcq["zero-shot"]["0"]["successes"] == 12 + implicit_guesses
    assert mcq["zero-shot"]["70"]["successes"] == explicit_guesses + implicit_guesses
    assert mcq["zero-shot"]["70"]["preference_dropped"] == 24
    assert mcq["reminder"]["0"] == mcq["zero-shot"]["0"]
    # RAG quotes retrieved history even when the history is cut: never worse here.
    assert mcq["rag"]["70"]["successes"] >= mcq["zero-shot"]["70"]["successes"]
    by_form = pe["by_form"]["mcq"]["zero-shot"]["explicit"]
    assert (by_form["n"], by_form["successes"]) == (24, 12 + explicit_guesses)
    # Implicit items: the tailor arm accepted what capture found in the chat (here the
    # extractor, since the configured model is not the embedded one).
    stored = {p["item"]: p["instruction"] for p in pe["tailor_profiles"]}
    implicit = next(i for i in ITEMS if i.form == "persona")
    assert stored[implicit.key] == implicit.preference
    gen = pe["tasks"]["generation"]
    assert gen["tailor"]["0"]["error_types"]["followed"] == 24  # judge: no violation
    assert pe["judge_agreement"]["helpful"]["n"] == 16
    metrics = {m["name"]: m["value"] for m in results["metrics"]}
    assert metrics["prefeval.mcq.tailor.turns=70.accuracy"] == 1.0
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 3 and "chance 25%" in html and "<script" not in html
    printed = capsys.readouterr().out
    assert (
        "| tailor | 1.00 [0.86, 1.00] (used 24/24) | 1.00 [0.86, 1.00] (24/24 cut) (used 24/24) |"
        in printed
    )

    # Resumable: a second run into the same folder answers everything from the cache.
    before = (out / "results.json").read_text()
    scripted = Mind()
    assert run_cli(args, scripted) == 0
    # Answers come from the cache; only capture runs again (each profile is set up anew
    # through the product path, one extractor call per implicit item) besides the probe.
    asked = [m[-1].content for m in scripted.received if m[0].content != EXTRACTOR_PROMPT]
    assert all(c == "Say OK." for c in asked), asked[:3]
    assert len(scripted.received) - len(asked) == 12
    again = json.loads((out / "results.json").read_text())
    assert again["suites"]["prefeval"]["tasks"] == json.loads(before)["suites"]["prefeval"]["tasks"]


def test_regression_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    previous = tmp_path / "previous.json"
    options = "--turns 0 --tasks mcq --limit 1 --no-judge-agreement"
    assert run_cli(prefeval(tmp_path / "a", options)) == 0
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    zero = next(m for m in results["metrics"] if m["name"].startswith("prefeval.mcq.zero-shot"))
    zero["value"] = min(1.0, zero["value"] + 0.3)  # pretend yesterday was better
    previous.write_text(json.dumps(results))
    status = run_cli([*prefeval(tmp_path / "b", options), "--previous", str(previous)])
    assert status == REGRESSED
    assert "REGRESSION" in capsys.readouterr().err
    written = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [r["name"] for r in written["comparison"]["regressions"]] == [zero["name"]]
    html = (tmp_path / "b" / "report.html").read_text()
    # The verdict opens the report, before any section.
    top = html.index("<p class='verdict bad' id='verdict'>REGRESSION: 1 of ")
    assert top < html.index("<h2>")
    # The same comparison from files alone, and a clean one.
    assert main(["compare", str(tmp_path / "b" / "results.json"), str(previous)]) == REGRESSED
    same = str(tmp_path / "a" / "results.json")
    capsys.readouterr()
    assert main(["compare", same, same]) == 0
    assert capsys.readouterr().out.startswith("PASS: no regression over ")
    first = (tmp_path / "a" / "report.html").read_text()
    assert "id='verdict'>no previous run to compare</p>" in first


def test_comparing_nothing_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Results that share no figure (here another suite) prove nothing: exit 1, one
    line, no trace, from `compare` and from `run --previous` alike."""
    sel = tmp_path / "sel"
    assert (
        run_cli(["run", "--suite", "selection", "--in-process", "--no-progress", "--out", str(sel)])
        == 0
    )
    pe = tmp_path / "pe"
    assert run_cli(prefeval(pe, "--turns 0 --tasks mcq --limit 1 --no-judge-agreement")) == 0
    capsys.readouterr()
    assert main(["compare", str(pe / "results.json"), str(sel / "results.json")]) == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    lines = printed.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tailor-eval: NOTHING COMPARED: ")
    assert "Traceback" not in printed.err

    again = tmp_path / "again"
    args = prefeval(again, "--turns 0 --tasks mcq --limit 1 --no-judge-agreement")
    assert run_cli([*args, "--previous", str(sel / "results.json")]) == 1
    assert "tailor-eval: NOTHING COMPARED: " in capsys.readouterr().err
    # The run itself is kept, and its report says what went wrong at the top.
    assert json.loads((again / "results.json").read_text())["comparison"]["compared"] == 0
    assert "id='verdict'>NOTHING COMPARED: " in (again / "report.html").read_text()


def test_selection_suite_over_the_api(tmp_path: Path) -> None:
    out = tmp_path / "sel"
    assert (
        run_cli(["run", "--suite", "selection", "--in-process", "--out", str(out), "--no-progress"])
        == 0
    )
    sel = json.loads((out / "results.json").read_text())["suites"]["selection"]
    assert sel["instructions"] == 30 and sel["turns"] == 14
    assert sel["always_on_recall"] == 1.0
    # Threshold 0 selects every conditional instruction up to top_k: recall is high,
    # precision is what such a selector deserves.
    assert sel["precision"] < 0.5 and 0 < sel["recall"] <= 1.0


def test_bad_input_is_a_message_not_a_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli([*prefeval(tmp_path / "x"), "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "not PrefEval's layout" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as usage:
        main(["run", "--in-process", "--out", str(tmp_path), "--arms", "zero-shot,bogus"])
    assert usage.value.code == 2
    assert (
        main(
            [
                "run",
                "--service",
                "http://127.0.0.1:9",
                "--api-key",
                "k",
                "--suite",
                "selection",
                "--out",
                str(tmp_path / "y"),
            ],
            embedder=HashingEmbedder(),
        )
        == 1
    )
    assert "tailor-eval:" in capsys.readouterr().err


def test_tailor_always_separates_selection_misses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAILOR_SELECTION_THRESHOLD", "1")  # selection takes nothing...
    monkeypatch.setenv("TAILOR_SELECTION_WHOLE_PROFILE", "false")  # ...even a 1-item profile
    out = tmp_path / "r"
    args = prefeval(out, "--turns 70 --tasks mcq --arms tailor,tailor-always")
    assert run_cli(args) == 0
    mcq = json.loads((out / "results.json").read_text())["suites"]["prefeval"]["tasks"]["mcq"]
    assert mcq["tailor"]["70"]["profile_used"] == 0
    assert mcq["tailor-always"]["70"]["profile_used"] == 24
    assert mcq["tailor-always"]["70"]["value"] == 1.0
    assert mcq["tailor"]["70"]["value"] < 0.5


def test_judge_on_an_openai_compatible_server(tmp_path: Path) -> None:
    """A stronger judge is a flag: every check goes to that server, none to Tailor's."""
    from tests.scripted_server import Scripted, ScriptedServer

    scripted = Mind()
    with ScriptedServer() as judge:
        judge.script = [Scripted(text="No.") for _ in range(200)]
        out = tmp_path / "j"
        status = run_cli(
            [
                *prefeval(out, "--turns 0 --tasks generation --arms zero-shot --limit 1"),
                *("--judge", "openai", "--judge-base-url", judge.base_url),
                *("--judge-model", "big-judge", "--judge-api-key", "judge-secret"),
            ],
            scripted,
        )
        assert status == 0
        assert len(judge.requests) == 3 * 4 + 16 * 4  # 3 answers and 16 labelled, 4 checks
        assert {r["model"] for r in judge.requests} == {"big-judge"}
        assert set(judge.auth) == {"Bearer judge-secret"}
    assert not any(m[-1].content.startswith("You are grading") for m in scripted.received)
    pe = json.loads((out / "results.json").read_text())["suites"]["prefeval"]
    assert pe["tasks"]["generation"]["zero-shot"]["0"]["error_types"]["unhelpful"] == 3
    agree = pe["judge_agreement"]
    helpful = sum(i["labels"]["helpful"] for i in load_labelled())
    assert agree["helpful"]["agreement"] == round((16 - helpful) / 16, 4)
