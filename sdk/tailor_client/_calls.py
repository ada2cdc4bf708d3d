"""Every endpoint, described once as a `Call`: method, path, body, the statuses that
mean success and how to read the answer. The sync and async clients only execute
calls, so the two cannot drift apart, and a new endpoint is one function here plus a
one-line method on each client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from tailor_client import types as t
from tailor_client._core import (
    Call,
    RetryPolicy,
    finish,
    no_body,
    raise_error,
    sse_line,
)

__all__ = ["Call", "RetryPolicy", "finish", "raise_error", "sse_line"]

Messages = str | Sequence[Mapping[str, object]]
"""A turn's messages: OpenAI-style dicts, or one string for a single user message."""


def _user(user_id: str) -> str:
    return f"/v1/users/{quote(user_id, safe='')}"


def _if_match(item_id: str, version: int | None) -> dict[str, str]:
    return {} if version is None else {"If-Match": f'"{item_id}:{version}"'}


def _idempotency(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Idempotency-Key": key}


def _page(limit: int, offset: int, **filters: str | None) -> dict[str, str | int]:
    params: dict[str, str | int] = {"limit": limit, "offset": offset}
    params.update({k: v for k, v in filters.items() if v is not None})
    return params


def _sent(**fields: Any) -> dict[str, Any]:
    """A body of the fields given: None means "not sent" (unchanged on PATCH)."""
    return {k: v for k, v in fields.items() if v is not None}


def messages_json(messages: Messages) -> list[Mapping[str, object]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return list(messages)


# --- health, tenants, keys -------------------------------------------------------------


def health() -> Call[t.Health]:
    return Call("GET", "/healthz", ok=(200, 503), retry=False)


def ready() -> Call[t.Health]:
    return Call("GET", "/readyz", ok=(200, 503), retry=False)


def create_tenant(name: str, admin_token: str) -> Call[t.CreatedTenant]:
    return Call(
        "POST",
        "/v1/tenants",
        ok=(201,),
        json={"name": name},
        headers={"Authorization": f"Bearer {admin_token}"},
    )


def create_key(name: str, user_id: str | None, expires_at: datetime | None) -> Call[t.CreatedKey]:
    when = expires_at.isoformat() if expires_at is not None else None
    body = _sent(name=name, user_id=user_id, expires_at=when)
    return Call("POST", "/v1/keys", ok=(201,), json=body)


def list_keys() -> Call[list[t.Key]]:
    return Call("GET", "/v1/keys")


def revoke_key(key_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/keys/{quote(key_id, safe='')}", no_body, ok=(204,))


# --- users ---------------------------------------------------------------------------------


def create_user(user_id: str) -> Call[t.User]:
    return Call("POST", "/v1/users", ok=(201,), json={"id": user_id})


def list_users(limit: int, offset: int) -> Call[t.UserPage]:
    return Call("GET", "/v1/users", params=_page(limit, offset))


def get_user(user_id: str) -> Call[t.User]:
    return Call("GET", _user(user_id))


def delete_user(user_id: str) -> Call[None]:
    return Call("DELETE", _user(user_id), no_body, ok=(204,))


# --- standing instructions -----------------------------------------------------------------


def create_instruction(
    user_id: str,
    text: str,
    applies_when: str | None,
    always_on: bool,
    source: str,
    idempotency_key: str | None,
) -> Call[t.Instruction]:
    body = _sent(text=text, applies_when=applies_when, always_on=always_on, source=source)
    return Call(
        "POST",
        f"{_user(user_id)}/instructions",
        ok=(201,),
        json=body,
        headers=_idempotency(idempotency_key),
    )


def list_instructions(
    user_id: str, status: str | None, limit: int, offset: int
) -> Call[t.InstructionPage]:
    return Call("GET", f"{_user(user_id)}/instructions", params=_page(limit, offset, status=status))


def get_instruction(user_id: str, instruction_id: str) -> Call[t.Instruction]:
    return Call("GET", f"{_user(user_id)}/instructions/{instruction_id}")


def update_instruction(
    user_id: str, instruction_id: str, changes: Mapping[str, Any], if_version: int | None
) -> Call[t.Instruction]:
    return Call(
        "PATCH",
        f"{_user(user_id)}/instructions/{instruction_id}",
        json=_sent(**changes),
        headers=_if_match(instruction_id, if_version),
    )


def delete_instruction(user_id: str, instruction_id: str, if_version: int | None) -> Call[None]:
    return Call(
        "DELETE",
        f"{_user(user_id)}/instructions/{instruction_id}",
        no_body,
        ok=(204,),
        headers=_if_match(instruction_id, if_version),
    )


def instruction_history(user_id: str, instruction_id: str) -> Call[t.InstructionHistory]:
    return Call("GET", f"{_user(user_id)}/instructions/{instruction_id}/history")


def restore_instruction(
    user_id: str, instruction_id: str, version: int, if_version: int | None
) -> Call[t.Instruction]:
    return Call(
        "POST",
        f"{_user(user_id)}/instructions/{instruction_id}/restore",
        json={"version": version},
        headers=_if_match(instruction_id, if_version),
    )


# --- edits and inferred preferences ----------------------------------------------------


def record_edit(
    user_id: str,
    context: str,
    draft: str,
    edited: str,
    task: str | None,
    applied_preference: str | None,
    idempotency_key: str | None,
) -> Call[t.Edit]:
    body = _sent(
        context=context,
        draft=draft,
        edited=edited,
        task=task,
        applied_preference=applied_preference,
    )
    return Call(
        "POST",
        f"{_user(user_id)}/edits",
        ok=(202,),
        json=body,
        headers=_idempotency(idempotency_key),
    )


def list_edits(user_id: str, limit: int, offset: int) -> Call[t.EditPage]:
    return Call("GET", f"{_user(user_id)}/edits", params=_page(limit, offset))


def get_edit(user_id: str, edit_id: str) -> Call[t.Edit]:
    return Call("GET", f"{_user(user_id)}/edits/{edit_id}")


def list_preferences(
    user_id: str, status: str | None, limit: int, offset: int
) -> Call[t.PreferencePage]:
    return Call("GET", f"{_user(user_id)}/preferences", params=_page(limit, offset, status=status))


def get_preference(user_id: str, preference_id: str) -> Call[t.Preference]:
    return Call("GET", f"{_user(user_id)}/preferences/{preference_id}")


def update_preference(
    user_id: str,
    preference_id: str,
    text: str | None,
    status: str | None,
    if_version: int | None,
) -> Call[t.Preference]:
    return Call(
        "PATCH",
        f"{_user(user_id)}/preferences/{preference_id}",
        json=_sent(text=text, status=status),
        headers=_if_match(preference_id, if_version),
    )


def promote_preference(
    user_id: str,
    preference_id: str,
    applies_when: str | None,
    always_on: bool,
    if_version: int | None,
    idempotency_key: str | None,
) -> Call[t.Promoted]:
    return Call(
        "POST",
        f"{_user(user_id)}/preferences/{preference_id}/promote",
        json=_sent(applies_when=applies_when, always_on=always_on),
        headers={**_if_match(preference_id, if_version), **_idempotency(idempotency_key)},
    )


def preference_history(user_id: str, preference_id: str) -> Call[t.PreferenceHistory]:
    return Call("GET", f"{_user(user_id)}/preferences/{preference_id}/history")


# --- preference examples -----------------------------------------------------------------


def create_example(
    user_id: str, prompt: str, chosen: str, rejected: str, idempotency_key: str | None
) -> Call[t.Example]:
    return Call(
        "POST",
        f"{_user(user_id)}/examples",
        ok=(201,),
        json={"prompt": prompt, "chosen": chosen, "rejected": rejected},
        headers=_idempotency(idempotency_key),
    )


def list_examples(user_id: str, limit: int, offset: int) -> Call[t.ExamplePage]:
    return Call("GET", f"{_user(user_id)}/examples", params=_page(limit, offset))


def get_example(user_id: str, example_id: str) -> Call[t.Example]:
    return Call("GET", f"{_user(user_id)}/examples/{example_id}")


def delete_example(user_id: str, example_id: str) -> Call[None]:
    return Call("DELETE", f"{_user(user_id)}/examples/{example_id}", no_body, ok=(204,))


# --- turns: context, chat, recent turns ------------------------------------------------------


def context(user_id: str, messages: Messages, options: Mapping[str, Any]) -> Call[t.Context]:
    body = {"messages": messages_json(messages), **_sent(**options)}
    return Call("POST", f"{_user(user_id)}/context", json=body)


def chat_body(
    messages: Messages, stream: bool, options: Mapping[str, Any], extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The OpenAI request; `extra` carries any field this client has no argument for
    (tools, response_format...), sent as given."""
    body: dict[str, Any] = {"messages": messages_json(messages), **_sent(**options)}
    if stream:
        body["stream"] = True
    body.update(extra or {})
    return body


def chat(body: Mapping[str, Any]) -> Call[t.ChatCompletion]:
    return Call("POST", "/v1/chat/completions", json=body)


def models() -> Call[t.ModelList]:
    return Call("GET", "/v1/models")


def model(model_id: str) -> Call[t.Model]:
    return Call("GET", f"/v1/models/{quote(model_id, safe='')}")


def turns(user_id: str, limit: int) -> Call[t.TurnPage]:
    return Call("GET", f"{_user(user_id)}/turns", params={"limit": limit})


# --- conversation capture and suggestions ------------------------------------------------


def submit_conversation(
    user_id: str,
    messages: Messages,
    conversation_id: str | None,
    idempotency_key: str | None,
) -> Call[t.Capture]:
    body = {"messages": messages_json(messages), **_sent(conversation_id=conversation_id)}
    return Call(
        "POST",
        f"{_user(user_id)}/conversations",
        ok=(202,),
        json=body,
        headers=_idempotency(idempotency_key),
    )


def get_conversation(user_id: str, capture_id: str) -> Call[t.Capture]:
    return Call("GET", f"{_user(user_id)}/conversations/{capture_id}")


def list_suggestions(user_id: str, status: str) -> Call[t.SuggestionList]:
    return Call("GET", f"{_user(user_id)}/suggestions", params={"status": status})


def accept_suggestion(
    user_id: str, suggestion_id: str, text: str | None
) -> Call[t.SuggestionAccepted]:
    return Call(
        "POST",
        f"{_user(user_id)}/suggestions/{suggestion_id}/accept",
        json=_sent(text=text),
    )


def reject_suggestion(user_id: str, suggestion_id: str) -> Call[t.Suggestion]:
    return Call("POST", f"{_user(user_id)}/suggestions/{suggestion_id}/reject")


# --- privacy and sessions --------------------------------------------------------------------


def export_user(user_id: str) -> Call[t.ProfileExport]:
    return Call("GET", f"{_user(user_id)}/export")


def import_user(
    user_id: str, document: Mapping[str, Any], idempotency_key: str | None
) -> Call[t.ImportResult]:
    return Call(
        "POST",
        f"{_user(user_id)}/import",
        ok=(201,),
        json=dict(document),
        headers=_idempotency(idempotency_key),
    )


def create_session(user_id: str) -> Call[t.Session]:
    return Call("POST", f"{_user(user_id)}/sessions", ok=(201,))


def end_session(user_id: str, session_id: str) -> Call[None]:
    return Call("DELETE", f"{_user(user_id)}/sessions/{session_id}", no_body, ok=(204,))
