"""`Idempotency-Key` on the POSTs that create things, written once for all of them.

A route takes `IdempotencyDep` and hands it the validated body and the work:
`return idempotent.respond(scope, body, 201, lambda: ...)`. Without the header the
work just runs. With it, the first request claims the key and its response (status,
body, the headers named in `headers`) is stored; a retry with the same key and the
same body gets that response again, with `Idempotent-Replayed: true`, and writes
nothing. The body is compared by a hash of its validated JSON, so a retry that only
reorders keys is the same request. A failed request stores nothing and releases the
key. Keys expire after `idempotency_ttl_s` (default 24 h)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.deps import PortsDep
from store.idempotency import IdempotencyRepository, StoredResponse
from store.idempotency import Request as KeyedRequest
from store.scope import UserScope

REPLAYED = "Idempotent-Replayed"

IDEMPOTENCY_HEADERS: dict[str, Any] = {
    REPLAYED: {
        "description": "`true` when this is the stored response to an earlier request "
        "with the same Idempotency-Key (nothing was written again)",
        "schema": {"type": "string", "enum": ["true"]},
    }
}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="a unique client-chosen key (e.g. a UUID) that makes retries of this "
        "POST safe: the same key and body get the first response back (24 h)",
        examples=["5f0c8a4e-7d1b-4a6f-9c3e-2b8d1e6f4a10"],
    ),
]


def body_hash(body: BaseModel) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Idempotent:
    def __init__(
        self, repository: IdempotencyRepository, key: str | None, method: str, path: str
    ) -> None:
        self._repository = repository
        self._key = key
        self._method = method
        self._path = path

    def respond(
        self,
        scope: UserScope,
        body: BaseModel,
        status_code: int,
        produce: Callable[[], BaseModel],
        headers: Callable[[BaseModel], dict[str, str]] | None = None,
    ) -> Response:
        """Run `produce` once per key; `headers` derives response headers (ETag) from
        its result, and they are stored and replayed with it."""
        if self._key is None:
            result = produce()
            return _json(result, status_code, headers(result) if headers else {})
        claim = self._repository.claim(
            KeyedRequest(scope, self._key, self._method, self._path, body_hash(body))
        )
        if isinstance(claim, StoredResponse):
            return Response(
                content=claim.body,
                status_code=claim.status,
                media_type="application/json",
                headers={**claim.headers, REPLAYED: "true"},
            )
        try:
            result = produce()
        except BaseException:
            self._repository.release(claim)
            raise
        extra = headers(result) if headers else {}
        response = _json(result, status_code, extra)
        self._repository.complete(claim, status_code, bytes(response.body).decode(), extra)
        return response


def _json(result: BaseModel, status_code: int, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(result.model_dump(mode="json"), status_code=status_code, headers=headers)


def _idempotent(request: Request, ports: PortsDep, key: IdempotencyKey = None) -> Idempotent:
    settings = ports.settings
    repository = IdempotencyRepository(
        ports.engine, ttl_s=settings.idempotency_ttl_s, pending_s=settings.idempotency_pending_s
    )
    return Idempotent(repository, key, request.method, request.url.path)


IdempotencyDep = Annotated[Idempotent, Depends(_idempotent)]
