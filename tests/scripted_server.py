"""A real HTTP server on loopback that speaks the OpenAI chat protocol from a script of
answers (status codes, bodies, delays, SSE streams). For testing the client's retry,
timeout and streaming logic over a real socket; the real model has its own tests."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


@dataclass
class Scripted:
    status: int = 200
    text: str = "hello from the server"
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw: str | None = None  # a body to send as-is
    hold: threading.Event | None = None  # answer only once the test sets it
    message: dict[str, Any] | None = None  # the whole assistant message (tool calls...)
    deltas: list[dict[str, Any]] | None = None  # a stream's deltas, one chunk each
    finish_reason: str = "stop"
    logprobs: dict[str, Any] | None = None
    usage: dict[str, Any] = field(default_factory=lambda: dict(USAGE))


USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def completion(text: str, model: str, step: Scripted | None = None) -> dict[str, Any]:
    step = step or Scripted(text=text)
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "system_fingerprint": "fp_scripted",
        "choices": [
            {
                "index": 0,
                "message": step.message or {"role": "assistant", "content": text},
                "logprobs": step.logprobs,
                "finish_reason": step.finish_reason,
            }
        ],
        "usage": step.usage,
    }


class ScriptedServer:
    def __init__(self) -> None:
        self.script: list[Scripted] = []
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            self.requests.append(body)
            self.auth.append(request.headers.get("authorization"))
            step = self.script.pop(0) if self.script else Scripted()
            if step.delay_s:
                time.sleep(step.delay_s)
            if step.hold is not None:
                await asyncio.to_thread(step.hold.wait, 60)
            if step.raw is not None:
                return Response(step.raw, status_code=step.status, media_type="application/json")
            if step.status != 200:
                return JSONResponse({"error": {"message": "scripted"}}, step.status, step.headers)
            if body.get("stream"):
                usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return StreamingResponse(
                    self._sse(step, body["model"], usage), media_type="text/event-stream"
                )
            return JSONResponse(completion(step.text, body["model"], step))

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @staticmethod
    def _sse(step: Scripted, model: str, include_usage: bool) -> Iterator[str]:
        """Like OpenAI: with `include_usage`, every chunk has `"usage": null` and a last
        chunk with no choices carries the usage."""
        deltas = step.deltas
        if deltas is None:
            words = step.text.split(" ")
            deltas = [{"content": w if i == 0 else " " + w} for i, w in enumerate(words)]
        extra: dict[str, Any] = {"usage": None} if include_usage else {}
        head = {"id": "x", "object": "chat.completion.chunk", "model": model, **extra}
        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        yield f"data: {json.dumps({**head, 'choices': [first]})}\n\n"
        for delta in deltas:
            choice = {"index": 0, "delta": delta, "logprobs": step.logprobs, "finish_reason": None}
            yield f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"
        last = {"index": 0, "delta": {}, "finish_reason": step.finish_reason}
        yield f"data: {json.dumps({**head, 'choices': [last]})}\n\n"
        if include_usage:
            yield f"data: {json.dumps({**head, 'choices': [], 'usage': step.usage})}\n\n"
        yield "data: [DONE]\n\n"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
