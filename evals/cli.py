"""`tailor-eval` (or `python -m evals`): the nightly job and its parts.

    tailor-eval run --suite nightly --in-process --out runs/2026-11-23
    tailor-eval run --suite nightly --service http://tailor:8000 --api-key "$KEY" \\
        --out runs/$(date +%F) --previous runs/latest/results.json
    tailor-eval compare runs/new/results.json runs/old/results.json
    tailor-eval report runs/new/results.json

Exit status: 0 done, 1 failed (message on stderr; also when --previous or compare
shares no figure with this run, since comparing nothing proves nothing), 2 bad
arguments, 3 a figure regressed beyond the tolerance against --previous."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from evals import capture_eval, selection_scale
from evals.cache import ItemCache
from evals.client import ServiceError, ServiceModel, TailorClient
from evals.compare import compare, verdict
from evals.job import SUITES, JobOptions, run_job
from evals.prefeval.arms import ALL_ARMS
from evals.prefeval.data import FORMS, DatasetError
from evals.prefeval.runner import BASELINE_USER, TASKS, PrefEvalConfig
from evals.report import markdown_table, render
from personalization.backends import ModelBackend
from personalization.embedder import Embedder
from store.errors import TailorError

REGRESSED = 3


def _csv(allowed: tuple[str, ...] | None = None, kind: type = str) -> Any:
    def parse(text: str) -> tuple[Any, ...]:
        values = tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        bad = [v for v in values if allowed is not None and v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed or ())}")
        return values

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tailor-eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run suites, write results.json and report.html")
    run.add_argument("--suite", choices=sorted(SUITES), default="nightly")
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument("--service", metavar="URL", help="a running Tailor, over HTTP")
    where.add_argument(
        "--in-process",
        action="store_true",
        help="start Tailor in this process (model and embedder from TAILOR_*)",
    )
    run.add_argument(
        "--api-key",
        default=os.environ.get("TAILOR_EVAL_API_KEY"),
        help="tenant key for --service (default $TAILOR_EVAL_API_KEY)",
    )
    run.add_argument("--data", type=Path, help="PrefEval-format folder (default: shipped set)")
    run.add_argument("--selection-data", type=Path, help="labelled selection set (JSON)")
    scale = selection_scale.ScaleConfig()
    run.add_argument(
        "--scale-data",
        type=Path,
        help="selection-at-scale: folder with dev/, heldout/ and heldout2/ in PrefEval's explicit "
        "layout (default: shipped set)",
    )
    run.add_argument(
        "--splits",
        type=_csv(),
        default=None,
        help="selection-at-scale and capture splits, each reported on its own "
        f"(default: selection-at-scale {','.join(scale.splits)}, "
        f"capture {','.join(capture_eval.CaptureConfig().splits)})",
    )
    run.add_argument(
        "--profile-sizes",
        type=_csv(kind=int),
        default=scale.sizes,
        help="selection-at-scale: preferences per user (default 1,10,50)",
    )
    run.add_argument(
        "--scale-limit", type=int, help="selection-at-scale: pairs per split (default: all)"
    )
    run.add_argument(
        "--capture-data",
        type=Path,
        help="capture: folder with dev/ and heldout/ (default: shipped set)",
    )
    run.add_argument(
        "--capture-source",
        choices=["api", "detector"],
        default="api",
        help="capture: api (the product path: POST /conversations, then the suggestions) "
        "or detector (the model-free detector in this process)",
    )
    run.add_argument(
        "--capture-limit",
        type=int,
        help="capture: the first N conversations of each kind per split (default: all)",
    )
    run.add_argument(
        "--out",
        type=Path,
        required=True,
        help="run folder: results.json, report.html, cache.jsonl (resumable)",
    )
    run.add_argument("--previous", type=Path, help="results.json of the run to compare with")
    run.add_argument("--tolerance", type=float, default=0.05, help="max drop of a rate")
    run.add_argument(
        "--cost-tolerance", type=float, default=0.10, help="max relative growth of a cost"
    )
    defaults = PrefEvalConfig()
    run.add_argument(
        "--turns",
        type=_csv(kind=int),
        default=defaults.turns,
        help="filler turns, e.g. 0,10,70,300",
    )
    run.add_argument(
        "--arms",
        type=_csv(ALL_ARMS),
        default=defaults.arms,
        help="zero-shot,reminder,rag,tailor (default) and tailor-always",
    )
    run.add_argument("--tasks", type=_csv(TASKS), default=defaults.tasks)
    run.add_argument("--forms", type=_csv(FORMS), default=defaults.forms)
    run.add_argument("--limit", type=int, help="items per form (default: all)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--context-window",
        type=int,
        default=defaults.context_window,
        help="the model's window in tokens; longer histories are cut and reported",
    )
    run.add_argument("--generation-max-tokens", type=int, default=defaults.generation_max_tokens)
    run.add_argument("--no-judge-agreement", action="store_true")
    run.add_argument(
        "--judge",
        choices=["service", "embedded", "openai"],
        default="service",
        help="service: the model behind Tailor; openai: --judge-base-url",
    )
    run.add_argument("--judge-base-url")
    run.add_argument("--judge-model")
    run.add_argument("--judge-api-key", default=os.environ.get("TAILOR_EVAL_JUDGE_API_KEY"))
    run.add_argument("--cipher-rounds", type=int, default=15)
    run.add_argument("--cipher-k", type=int, default=5)
    run.add_argument("--cipher-max-tokens", type=int, default=120)
    run.add_argument("--user-base-url", help="CIPHER's simulated user on another server")
    run.add_argument("--user-model")
    run.add_argument("--no-progress", action="store_true")

    cmp = commands.add_parser("compare", help="compare two results.json files")
    cmp.add_argument("current", type=Path)
    cmp.add_argument("previous", type=Path)
    cmp.add_argument("--tolerance", type=float, default=0.05)
    cmp.add_argument("--cost-tolerance", type=float, default=0.10)

    rep = commands.add_parser("report", help="render report.html from a results.json")
    rep.add_argument("results", type=Path)
    rep.add_argument("--html", type=Path)
    return parser


def _remote(base_url: str, model: str | None, api_key: str | None) -> ModelBackend:
    from personalization.backends.openai_compatible import OpenAICompatibleBackend

    return OpenAICompatibleBackend(base_url, model or "default", api_key=api_key, timeout_s=300)


@contextlib.contextmanager
def _service(
    args: argparse.Namespace, embedder: Embedder | None, backend: ModelBackend | None
) -> Iterator[TailorClient]:
    if args.service:
        if not args.api_key:
            raise SystemExit("tailor-eval: --service needs --api-key or $TAILOR_EVAL_API_KEY")
        client = TailorClient.connect(args.service, args.api_key)
        try:
            yield client
        finally:
            client.close()
        return
    from evals.inprocess import in_process_service

    with in_process_service(embedder=embedder, backend=backend) as client:
        yield client


def _load(path: Path) -> dict[str, Any]:
    try:
        found: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"tailor-eval: cannot read {path}: {exc}") from None
    return found


def _gate(
    results: dict[str, Any], previous: Path | None, tolerance: float, cost_tolerance: float
) -> dict[str, Any] | None:
    if previous is None:
        return None
    old = _load(previous)
    found = compare(
        results["metrics"],
        old.get("metrics", []),
        tolerance=tolerance,
        cost_tolerance=cost_tolerance,
    )
    found["previous"] = str(previous)
    return found


def _print_summary(results: dict[str, Any]) -> None:
    prefeval = results["suites"].get("prefeval")
    if prefeval:
        turns = [str(t) for t in prefeval["config"]["turns"]]
        for task, table in prefeval["tasks"].items():
            chance = f", chance {prefeval['chance']:.0%}" if task == "mcq" else ""
            print(f"\n{task} accuracy [95% CI]{chance}:\n{markdown_table(table, turns)}")
    if "selection" in results["suites"]:
        s = results["suites"]["selection"]
        print(f"\nselection: precision {s['precision']} recall {s['recall']} F1 {s['f1']}")
    if "cipher" in results["suites"]:
        from evals.cipher_env import table

        print("\n" + table(results["suites"]["cipher"]))
    if "selection-at-scale" in results["suites"]:
        print(selection_scale.markdown(results["suites"]["selection-at-scale"]))
    if "capture" in results["suites"]:
        print(capture_eval.markdown(results["suites"]["capture"]))


def _run(args: argparse.Namespace, embedder: Embedder | None, backend: ModelBackend | None) -> int:
    cfg = PrefEvalConfig(
        turns=args.turns,
        arms=args.arms,
        tasks=args.tasks,
        forms=args.forms,
        seed=args.seed,
        limit=args.limit,
        context_window=args.context_window,
        generation_max_tokens=args.generation_max_tokens,
        judge_agreement=not args.no_judge_agreement,
    )
    if any(size < 1 for size in args.profile_sizes) or (
        args.scale_limit is not None and args.scale_limit < 1
    ):
        raise SystemExit("tailor-eval: --profile-sizes and --scale-limit must be at least 1")
    scale = selection_scale.ScaleConfig(
        sizes=args.profile_sizes, seed=args.seed, limit=args.scale_limit
    )
    if args.splits:
        scale = dataclasses.replace(scale, splits=args.splits)
    if args.scale_data:
        scale = dataclasses.replace(scale, data=args.scale_data)
    if args.capture_limit is not None and args.capture_limit < 1:
        raise SystemExit("tailor-eval: --capture-limit must be at least 1")
    capture = capture_eval.CaptureConfig(source=args.capture_source, limit=args.capture_limit)
    if args.splits:
        capture = dataclasses.replace(capture, splits=args.splits)
    if args.capture_data:
        capture = dataclasses.replace(capture, data=args.capture_data)
    options = JobOptions(
        suite=args.suite,
        prefeval=cfg,
        scale=scale,
        capture=capture,
        cipher_rounds=args.cipher_rounds,
        cipher_k=args.cipher_k,
        cipher_max_tokens=args.cipher_max_tokens,
        service=args.service or "in-process",
    )
    if args.data:
        options = dataclasses.replace(options, data=args.data)
    if args.selection_data:
        options = dataclasses.replace(options, selection_data=args.selection_data)
    if args.judge == "openai" and not args.judge_base_url:
        raise SystemExit("tailor-eval: --judge openai needs --judge-base-url (and --judge-model)")
    if embedder is None:
        from personalization.embedder import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = ItemCache(args.out / "cache.jsonl")
    if len(cache):
        print(f"resuming: {len(cache)} cached answers in {cache.path}", file=sys.stderr)
    try:
        with _service(args, embedder, backend) as client:
            judge: ModelBackend
            if args.judge == "openai":
                judge = _remote(args.judge_base_url, args.judge_model, args.judge_api_key)
            elif args.judge == "embedded":
                from personalization.backends.llama_cpp import LlamaCppBackend

                judge = LlamaCppBackend()
            else:
                judge = ServiceModel(client, BASELINE_USER)
            user_model = (
                _remote(args.user_base_url, args.user_model, args.judge_api_key)
                if args.user_base_url
                else None
            )
            results = run_job(
                client,
                options,
                embedder=embedder,
                cache=cache,
                judge_backend=judge,
                user_model=user_model,
                progress=not args.no_progress,
            )
    finally:
        cache.close()
    results["comparison"] = _gate(results, args.previous, args.tolerance, args.cost_tolerance)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "report.html").write_text(render(results), encoding="utf-8")
    _print_summary(results)
    print(
        f"\nwrote {args.out / 'results.json'} and {args.out / 'report.html'} "
        f"({cache.hits} answers from the cache)"
    )
    return _verdict(results["comparison"])


def _verdict(comparison: dict[str, Any] | None) -> int:
    if comparison and not comparison["compared"]:
        print(f"tailor-eval: {verdict(comparison)}", file=sys.stderr)
        return 1
    if not comparison or not comparison["regressions"]:
        return 0
    print(f"\nREGRESSION against {comparison['previous']}:", file=sys.stderr)
    for r in comparison["regressions"]:
        print(f"  {r['name']}: {r['previous']} -> {r['current']} (n={r['n']})", file=sys.stderr)
    return REGRESSED


def main(
    argv: list[str] | None = None,
    *,
    embedder: Embedder | None = None,
    backend: ModelBackend | None = None,
) -> int:
    """`embedder`/`backend` replace the in-process service's (tests pass fakes)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "compare":
            current = _load(args.current)
            current["comparison"] = _gate(
                current, args.previous, args.tolerance, args.cost_tolerance
            )
            status = _verdict(current["comparison"])
            if status == 0:
                print(verdict(current["comparison"]))
            return status
        if args.command == "report":
            html = args.html or args.results.with_name("report.html")
            html.write_text(render(_load(args.results)), encoding="utf-8")
            print(f"wrote {html}")
            return 0
        return _run(args, embedder, backend)
    except (DatasetError, ServiceError, TailorError, TimeoutError, OSError, httpx.HTTPError) as exc:
        print(f"tailor-eval: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tailor-eval: interrupted; rerun with the same --out to resume", file=sys.stderr)
        return 130
