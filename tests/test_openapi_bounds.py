"""Every bound the OpenAPI document declares on a main write endpoint's request body
(maxLength, maxItems, maximum, nested ones included) is the bound the server enforces:
exactly the bound is accepted, one more is 422. The bounds are read from the document,
not copied here, so a declared bound that drifts from the enforced one fails this test.

Skipped by design: maxLength on an enumerated string (the enum, not the length, bounds
it; a string of that length is no member)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from service.schemas import MAX_CONDITION_CHARS, MAX_INSTRUCTION_CHARS
from tests.conftest import ADMIN_TOKEN, Api

Place = Callable[[Any], Any]
LONG_USER = "a" * 128  # the longest user id, which a key is bound to at the boundary


@dataclass(frozen=True)
class Bound:
    where: str  # e.g. "messages[0].content"
    keyword: str  # maxLength, maxItems or maximum
    limit: float
    schema: dict[str, Any]
    place: Place  # the base body with a value put at `where`
    sibling: Any  # the value at `where` in the base body (shape for list items)


class Walker:
    def __init__(self, spec: dict[str, Any], samples: dict[str, Any]) -> None:
        self._schemas: dict[str, Any] = spec["components"]["schemas"]
        self._samples = samples  # by schema name, where the smallest valid value is not

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self._schemas[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def sample(self, schema: dict[str, Any]) -> Any:
        """A small valid value of the schema (required fields only)."""
        name = schema.get("$ref", "").rsplit("/", 1)[-1]
        if name in self._samples:
            return copy.deepcopy(self._samples[name])
        schema = self.resolve(schema)
        if "anyOf" in schema:
            options = [o for o in schema["anyOf"] if self.resolve(o).get("type") != "null"]
            return self.sample(options[0])
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type", "object")
        if kind == "string":
            return "a"
        if kind in ("integer", "number"):
            return schema.get("minimum", 1)
        if kind == "boolean":
            return False
        if kind == "array":
            return []
        required = schema.get("required", [])
        return {n: self.sample(p) for n, p in schema.get("properties", {}).items() if n in required}

    def fits(self, schema: dict[str, Any], value: Any) -> bool:
        kind = self.resolve(schema).get("type", "object")
        types: dict[str, type | tuple[type, ...]] = {
            "string": str,
            "array": list,
            "object": dict,
            "integer": int,
            "number": (int, float),
            "boolean": bool,
        }
        return kind in types and isinstance(value, types[kind])

    def bounds(
        self, schema: dict[str, Any], value: Any, place: Place, where: str
    ) -> Iterator[Bound]:
        schema = self.resolve(schema)
        for keyword in ("maxLength", "maxItems", "maximum"):
            if keyword in schema and not (keyword == "maxLength" and "enum" in schema):
                yield Bound(where, keyword, schema[keyword], schema, place, value)
        for option in schema.get("anyOf", []):
            if self.resolve(option).get("type") == "null":
                continue
            fitting = value if self.fits(option, value) else self.sample(option)
            yield from self.bounds(option, fitting, place, where)
        if "properties" in schema:
            obj = value if isinstance(value, dict) else self.sample(schema)
            for name, prop in schema["properties"].items():
                child = obj.get(name)
                fitting = child if self.fits(prop, child) else self.sample(prop)

                def put(new: Any, name: str = name, obj: dict[str, Any] = obj) -> Any:
                    return place({**obj, name: new})

                yield from self.bounds(prop, fitting, put, f"{where}.{name}".lstrip("."))
        if "items" in schema:
            items = value if isinstance(value, list) and value else [self.sample(schema["items"])]

            def put_first(new: Any, items: list[Any] = items) -> Any:
                return place([new, *items[1:]])

            yield from self.bounds(schema["items"], items[0], put_first, f"{where}[0]")

    def at_and_over(self, bound: Bound) -> tuple[Any, Any]:
        limit = bound.limit
        if bound.keyword == "maxLength":
            return "a" * int(limit), "a" * (int(limit) + 1)
        if bound.keyword == "maximum":
            return limit, limit + 1
        items = self.resolve(bound.schema["items"])
        if "enum" in items:  # distinct members, then one repeated
            members = items["enum"]
            return [members[i % len(members)] for i in range(int(limit))], [
                members[i % len(members)] for i in range(int(limit) + 1)
            ]
        element = bound.sibling[0] if bound.sibling else self.sample(bound.schema["items"])
        return [copy.deepcopy(element) for _ in range(int(limit))], [
            copy.deepcopy(element) for _ in range(int(limit) + 1)
        ]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as in the OpenAPI document
    url: str  # filled in
    base: dict[str, Any]
    ok: int


def _endpoints(api: Api, h: dict[str, str]) -> list[Endpoint]:
    api.user(h, "alice")
    api.user(h, LONG_USER)
    item = api.instruction(h, "alice", text="Answer in French.")
    message = {"role": "user", "content": "plan a trip", "tool_calls": [{"id": "x"}]}
    u = "/v1/users/{user_id}"
    return [
        Endpoint("post", "/v1/tenants", "/v1/tenants", {"name": "acme"}, 201),
        Endpoint("post", "/v1/keys", "/v1/keys", {"name": "k", "user_id": "alice"}, 201),
        Endpoint("post", "/v1/users", "/v1/users", {"id": "someone"}, 201),
        Endpoint(
            "post",
            f"{u}/instructions",
            "/v1/users/alice/instructions",
            {"text": "Be brief.", "applies_when": "when I ask"},
            201,
        ),
        Endpoint(
            "patch",
            f"{u}/instructions/{{instruction_id}}",
            f"/v1/users/alice/instructions/{item['id']}",
            {"text": "Be brief."},
            200,
        ),
        Endpoint(
            "post",
            f"{u}/examples",
            "/v1/users/alice/examples",
            {"prompt": "p", "chosen": "c", "rejected": "r"},
            201,
        ),
        Endpoint(
            "post",
            f"{u}/edits",
            "/v1/users/alice/edits",
            {"context": "note", "draft": "Dear team, hello", "edited": "Hi", "task": "t"},
            202,
        ),
        Endpoint("post", f"{u}/context", "/v1/users/alice/context", {"messages": [message]}, 200),
        Endpoint(
            "post",
            f"{u}/conversations",
            "/v1/users/alice/conversations",
            {"messages": [message], "conversation_id": "chat-1"},
            202,
        ),
    ]


def test_every_declared_bound_is_the_enforced_bound(api: Api) -> None:
    h = api.tenant()
    spec = api.client.get("/openapi.json").json()
    # A list of content parts counts as the user's message only if a part has text.
    walker = Walker(spec, {"ContentPart": {"type": "text", "text": "plan a trip"}})
    checked: set[tuple[str, str, str, float]] = set()
    for endpoint in _endpoints(api, h):
        headers = (
            {"Authorization": f"Bearer {ADMIN_TOKEN}"} if endpoint.path == "/v1/tenants" else h
        )
        operation = spec["paths"][endpoint.path][endpoint.method]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        base = copy.deepcopy(endpoint.base)
        sent = api.client.request(endpoint.method, endpoint.url, json=base, headers=headers)
        assert sent.status_code == endpoint.ok, (endpoint.path, sent.text)
        for bound in walker.bounds(schema, base, lambda body: body, ""):
            at, over = walker.at_and_over(bound)
            case = f"{endpoint.method} {endpoint.path} {bound.where} {bound.keyword}={bound.limit}"
            if endpoint.path == "/v1/users" and bound.where == "id":
                at, over = "b" * len(at), "b" * len(over)  # LONG_USER exists already
            accepted = api.client.request(
                endpoint.method, endpoint.url, json=bound.place(at), headers=headers
            )
            assert accepted.status_code == endpoint.ok, (case, accepted.text[:300])
            if bound.keyword == "maxLength" and "." not in bound.where and "[" not in bound.where:
                # what was accepted was kept whole, not clipped
                echoed = accepted.json()
                if isinstance(echoed, dict) and bound.where in echoed:
                    assert echoed[bound.where] == at, case
            refused = api.client.request(
                endpoint.method,
                endpoint.url,
                json=bound.place(over),
                headers=headers,
            )
            assert refused.status_code == 422, (case, refused.text[:300])
            assert refused.json()["error"]["code"] == "invalid_request", case
            checked.add((endpoint.method, endpoint.path, bound.where, bound.limit))
    # The walk reached the bounds the issue found wrong, and the nested ones.
    u = "/v1/users/{user_id}"
    for expected in (
        ("post", f"{u}/instructions", "text", MAX_INSTRUCTION_CHARS),
        ("post", f"{u}/instructions", "applies_when", MAX_CONDITION_CHARS),
        ("patch", f"{u}/instructions/{{instruction_id}}", "applies_when", MAX_CONDITION_CHARS),
        ("patch", f"{u}/instructions/{{instruction_id}}", "typical_requests[0]", 300),
        ("post", f"{u}/context", "messages", 1000),
        ("post", f"{u}/context", "messages[0].content", 32_000),
        ("post", f"{u}/context", "messages[0].content[0].text", 32_000),
        ("post", f"{u}/context", "top_k", 50),
        ("post", "/v1/keys", "user_id", 128),
        ("post", "/v1/tenants", "name", 200),
    ):
        assert expected in checked, expected
    assert len(checked) >= 30, sorted(checked)
