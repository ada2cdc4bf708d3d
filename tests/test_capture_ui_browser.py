"""The profile page lists what was heard in the user's conversations; accepting one in a
real headless Chromium makes it a standing instruction (checked through the API)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.browser import LiveServer, chromium, live_server, page

pytestmark = pytest.mark.browser

__all__ = ["chromium", "live_server", "page"]  # fixtures, imported for pytest


def test_a_person_accepts_and_rejects_what_was_heard(live_server: LiveServer, page: Any) -> None:
    s = live_server
    h = s.tenant("capture-ui")
    s.call("POST", "/v1/users", h, {"id": "cara"}, expect=201)
    job = s.call(
        "POST",
        "/v1/users/cara/conversations",
        h,
        {"messages": [{"role": "user", "content": "I'm allergic to peanuts. I love jazz."}]},
        expect=202,
    )
    deadline = time.monotonic() + 30
    while s.call("GET", f"/v1/users/cara/conversations/{job['id']}", h)["status"] != "done":
        assert time.monotonic() < deadline, "capture never finished"
        time.sleep(0.05)

    page.goto(s.link(h, "cara")["url"])
    page.wait_for_selector("body[data-ready='true']")
    items = page.locator("#captured-list > li")
    assert items.count() == 2
    peanuts = items.filter(has_text="allergic to peanuts")
    assert "you said" in peanuts.inner_text()
    peanuts.get_by_role("button", name="Accept").first.click()
    page.wait_for_selector("#instruction-list >> text=allergic to peanuts")
    items.filter(has_text="jazz").get_by_role("button", name="Reject").first.click()
    page.wait_for_selector("#captured-empty:not([hidden])")

    accepted = s.call("GET", "/v1/users/cara/suggestions?status=accepted", h)["data"]
    rejected = s.call("GET", "/v1/users/cara/suggestions?status=rejected", h)["data"]
    assert ["peanuts" in a["text"] for a in accepted] == [True]
    assert ["jazz" in r["text"] for r in rejected] == [True]
    listed = s.call("GET", "/v1/users/cara/instructions", h)["items"]
    assert [i["source"] for i in listed] == ["conversation"]
