"""The profile page in a real headless Chromium against Tailor over real HTTP: what a
person sees and does, and what the API holds afterwards.

One live server (SQLite) serves the module; each test makes its own tenant or users.
Screenshots go to $TAILOR_SCREENSHOTS (default /tmp/tailor-ui-screenshots)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.browser import LiveServer, chromium, live_server, page, screenshot

pytestmark = pytest.mark.browser

__all__ = ["chromium", "live_server", "page"]  # fixtures, imported for pytest

PHONE = {"width": 375, "height": 812}


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='true']")


def _item(page: Any, list_id: str, text: str) -> Any:
    return page.locator(f"#{list_id} > li").filter(has_text=text)


def test_a_person_reviews_and_changes_their_profile(live_server: LiveServer, page: Any) -> None:
    s = live_server
    h = s.tenant("profile-flow")
    s.call("POST", "/v1/users", h, {"id": "alice"}, expect=201)
    gluten = s.call(
        "POST",
        "/v1/users/alice/instructions",
        h,
        {"text": "I avoid gluten", "always_on": True},
        expect=201,
    )
    plan = s.call(
        "POST",
        "/v1/users/alice/instructions",
        h,
        {"text": "Use bullet points", "applies_when": "when I ask for a plan"},
        expect=201,
    )
    s.call(
        "POST",
        "/v1/users/alice/examples",
        h,
        {"prompt": "Summarise this article", "chosen": "- one\n- two", "rejected": "Well, so..."},
        expect=201,
    )
    suggestion = s.suggestion_from_edit(h, "alice")
    link = s.link(h, "alice")

    _open(page, link["url"])
    # The token left the address bar at once, and lives only in this tab's storage.
    assert "token" not in page.url
    assert page.locator("#who-name").inner_text() == "alice"
    assert (
        _item(page, "instruction-list", "I avoid gluten")
        .locator(".meta")
        .inner_text()
        .startswith("Always on")
    )
    assert (
        "Only when: when I ask for a plan"
        in _item(page, "instruction-list", "Use bullet points").inner_text()
    )
    card = _item(page, "suggested-list", suggestion["text"])
    assert card.count() == 1
    assert "Meeting moved to Thursday." in card.locator(".edit-source").inner_text()
    assert "Summarise this article" in page.locator("#example-list").inner_text()
    screenshot(page, "1-profile-1280")

    # Edit an instruction's text and condition.
    item = _item(page, "instruction-list", "Use bullet points")
    item.get_by_role("button", name="Edit").click()
    item.get_by_label("Instruction").fill("Use short bullet points")
    item.get_by_label("Only when (leave empty for none)").fill("when I plan a trip")
    screenshot(page, "2-editing-1280")
    item.get_by_role("button", name="Save").click()
    page.wait_for_selector("#status:has-text('Instruction saved.')")
    edited = _item(page, "instruction-list", "Use short bullet points")
    assert "Only when: when I plan a trip" in edited.inner_text()
    api_plan = s.call("GET", f"/v1/users/alice/instructions/{plan['id']}", h)
    assert (api_plan["text"], api_plan["applies_when"], api_plan["version"]) == (
        "Use short bullet points",
        "when I plan a trip",
        2,
    )

    # Its history shows both versions; restore the first one.
    edited.get_by_role("button", name="History").click()
    history = edited.locator(".history")
    history.wait_for()
    assert history.locator("li").count() == 2
    assert "Use bullet points" in history.inner_text()
    assert edited.get_by_role("button", name="Restore version 2").count() == 0  # current
    edited.get_by_role("button", name="Restore version 1").click()
    page.wait_for_selector("#status:has-text('Version 1 restored.')")
    restored = _item(page, "instruction-list", "Use bullet points")
    assert "Only when: when I ask for a plan" in restored.inner_text()
    assert "version 3" in restored.locator(".meta").inner_text()
    api_plan = s.call("GET", f"/v1/users/alice/instructions/{plan['id']}", h)
    assert (api_plan["text"], api_plan["applies_when"], api_plan["version"]) == (
        "Use bullet points",
        "when I ask for a plan",
        3,
    )

    # Turn the always-on one off, then keep it off.
    _item(page, "instruction-list", "I avoid gluten").get_by_role("button", name="Turn off").click()
    page.wait_for_selector("#status:has-text('Instruction turned off.')")
    assert "Disabled" in _item(page, "instruction-list", "I avoid gluten").inner_text()
    assert s.call("GET", f"/v1/users/alice/instructions/{gluten['id']}", h)["status"] == "disabled"

    # Accept the suggestion learned from the edit.
    _item(page, "suggested-list", suggestion["text"]).get_by_role("button", name="Accept").click()
    page.wait_for_selector("#status:has-text('Preference accepted.')")
    assert page.locator("#suggested-empty").is_visible()
    assert _item(page, "accepted-list", suggestion["text"]).count() == 1
    api_pref = s.call("GET", f"/v1/users/alice/preferences/{suggestion['id']}", h)
    assert api_pref["status"] == "accepted"

    # Add an instruction with the keyboard only.
    page.locator("#new-text").focus()
    page.keyboard.type("Call me Al")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("#status:has-text('Instruction added.')")
    added = [
        i
        for i in s.call("GET", "/v1/users/alice/instructions", h)["items"]
        if i["text"] == "Call me Al"
    ]
    assert [(i["always_on"], i["source"]) for i in added] == [(True, "user")]
    screenshot(page, "3-after-changes-1280")

    # Export: the downloaded file is the API's export.
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download my data").click()
    exported = json.loads(download_info.value.path().read_text())
    assert download_info.value.suggested_filename == "tailor-profile-alice.json"
    texts = json.dumps(exported)
    assert "Use short bullet points" in texts and "Call me Al" in texts

    # Delete: the dialog asks first; "Keep my data" keeps it.
    page.get_by_role("button", name="Delete my data…").click()
    dialog = page.get_by_role("dialog", name="Delete all your data?")
    assert dialog.is_visible()
    screenshot(page, "4-confirm-delete-1280", full_page=False)
    page.keyboard.press("Escape")
    assert not dialog.is_visible()
    assert page.evaluate("document.activeElement.id") == "delete-all"
    s.call("GET", "/v1/users/alice", h)
    page.get_by_role("button", name="Delete my data…").click()
    dialog.get_by_role("button", name="Delete everything").click()
    page.wait_for_selector("#deleted:visible")
    screenshot(page, "5-deleted-1280")
    assert not page.locator("#profile").is_visible()
    s.call("GET", "/v1/users/alice", h, expect=404)
    assert page.evaluate("window.sessionStorage.length") == 0


def test_restore_from_the_history(live_server: LiveServer, page: Any) -> None:
    """The page offers restore because the server's OpenAPI document lists it; the click
    sends the real request, and the page and the API then show the restored text."""
    s = live_server
    h = s.tenant("restore")
    s.call("POST", "/v1/users", h, {"id": "rita"}, expect=201)
    item = s.call("POST", "/v1/users/rita/instructions", h, {"text": "Reply in French"}, 201)
    s.call("PATCH", f"/v1/users/rita/instructions/{item['id']}", h, {"text": "Reply in German"})
    sent: list[Any] = []
    page.on(
        "request",
        lambda request: (
            sent.append((request.method, request.url, request.post_data_json))
            if request.url.endswith("/restore")
            else None
        ),
    )
    _open(page, s.link(h, "rita")["url"])
    card = _item(page, "instruction-list", "Reply in German")
    card.get_by_role("button", name="History").click()
    restore = card.get_by_role("button", name="Restore version 1")
    restore.wait_for()
    assert card.get_by_role("button", name="Restore version 2").count() == 0  # current
    screenshot(page, "6-history-with-restore-1280")
    restore.click()
    page.wait_for_selector("#status:has-text('Version 1 restored.')")
    assert sent == [
        ("POST", f"{s.base}/v1/users/rita/instructions/{item['id']}/restore", {"version": 1})
    ]
    assert _item(page, "instruction-list", "Reply in French").count() == 1
    assert _item(page, "instruction-list", "Reply in German").count() == 0
    current = s.call("GET", f"/v1/users/rita/instructions/{item['id']}", h)
    assert (current["text"], current["version"]) == ("Reply in French", 3)
    history = s.call("GET", f"/v1/users/rita/instructions/{item['id']}/history", h)
    assert [v["text"] for v in history["versions"]] == [
        "Reply in French",
        "Reply in German",
        "Reply in French",
    ]


def test_recent_turns_say_what_was_used_and_why(live_server: LiveServer, page: Any) -> None:
    s = live_server
    h = s.tenant("turns")
    s.call("POST", "/v1/users", h, {"id": "tess"}, expect=201)
    gluten = s.call(
        "POST",
        "/v1/users/tess/instructions",
        h,
        {"text": "I avoid <b>gluten</b>", "always_on": True},
        expect=201,
    )
    gone = s.call(
        "POST", "/v1/users/tess/instructions", h, {"text": "Call me T", "always_on": True}, 201
    )
    ctx = s.call(
        "POST",
        "/v1/users/tess/context",
        h,
        {"messages": [{"role": "user", "content": "what should I cook tonight?"}]},
    )
    assert {i["id"] for i in ctx["instructions"]} == {gluten["id"], gone["id"]}
    s.call("DELETE", f"/v1/users/tess/instructions/{gone['id']}", h, expect=204)
    _open(page, s.link(h, "tess")["url"])
    turns = page.locator("#turn-list > li")
    assert turns.count() == 1
    assert "profile for your app" in turns.first.inner_text()
    used = turns.first.locator(f"[data-item='{gluten['id']}']")
    assert used.inner_text() == (
        "Instruction (version 1): I avoid <b>gluten</b> — used because it is always on"
    )
    link = used.get_by_role("link", name="I avoid <b>gluten</b>")
    assert link.get_attribute("href") == f"#item-{gluten['id']}"
    link.click()
    assert page.locator(f"#item-{gluten['id']}").is_visible()
    assert "I avoid <b>gluten</b>" in page.locator(f"#item-{gluten['id']}").inner_text()
    # The deleted one is named as gone, not linked.
    removed = turns.first.locator(f"[data-item='{gone['id']}']")
    assert "no longer in your profile" in removed.inner_text()
    assert removed.get_by_role("link").count() == 0
    assert page.locator("#turn-list b").count() == 0
    # The page and the API agree on what the turn used.
    api_turns = s.call("GET", "/v1/users/tess/turns", h)["items"]
    assert [i["id"] for i in api_turns[0]["items"]] == [
        e.get_attribute("data-item") for e in turns.first.locator("[data-item]").all()
    ]
    screenshot(page, "11-recent-turns-1280")


def test_fields_the_page_does_not_know_are_shown(live_server: LiveServer, page: Any) -> None:
    """Derived fields (e.g. a kind and domains from instruction selection) appear as they
    come, whatever their names, so the page keeps up with the API."""
    s = live_server
    h = s.tenant("extra-fields")
    s.call("POST", "/v1/users", h, {"id": "dora"}, expect=201)
    s.call("POST", "/v1/users/dora/instructions", h, {"text": "No peanuts, ever"}, expect=201)

    def with_derived_fields(route: Any) -> None:
        body = route.fetch().json()
        for item in body["items"]:
            item.update(kind="constraint", domains=["food", "health"], empty_list=[])
        route.fulfill(json=body)

    page.route("**/v1/users/dora/instructions?limit=500", with_derived_fields)
    _open(page, s.link(h, "dora")["url"])
    extra = _item(page, "instruction-list", "No peanuts, ever").locator("dl.extra")
    assert extra.is_visible()
    shown = dict(
        zip(
            extra.locator("dt").all_inner_texts(),
            extra.locator("dd").all_inner_texts(),
            strict=True,
        )
    )
    assert (shown["kind"], shown["domains"]) == ("constraint", "food, health")
    assert "empty list" not in shown  # an empty list is not shown


def test_a_token_shows_its_own_user_only(live_server: LiveServer, page: Any) -> None:
    s = live_server
    h = s.tenant("two-users")
    for user, text in (("ann", "Ann is vegan"), ("ben", "Ben likes jazz")):
        s.call("POST", "/v1/users", h, {"id": user}, expect=201)
        s.call("POST", f"/v1/users/{user}/instructions", h, {"text": text}, expect=201)
    ben = s.link(h, "ben")
    _open(page, ben["url"])
    assert "Ben likes jazz" in page.locator("#instruction-list").inner_text()
    assert "Ann is vegan" not in page.content()
    # Ben's token with Ann's name in the link: every request answers 404.
    forged = ben["url"].replace("user=ben", "user=ann")
    page.goto("about:blank")
    page.goto(forged)
    page.wait_for_selector("#alert:visible")
    assert page.locator("#alert").inner_text() == "no such user"
    assert "Ann is vegan" not in page.content()
    assert page.locator("#instruction-list > li").count() == 0


def test_profile_markup_is_shown_as_text(live_server: LiveServer, page: Any) -> None:
    s = live_server
    h = s.tenant("escaping")
    s.call("POST", "/v1/users", h, {"id": "eve"}, expect=201)
    payloads = [
        '<img src=x onerror="window.__pwned=1">',
        "<script>window.__pwned=2</script>",
        '<a href="javascript:window.__pwned=3">click</a> & <b>bold</b>',
    ]
    for text in payloads:
        s.call("POST", "/v1/users/eve/instructions", h, {"text": text, "applies_when": text}, 201)
    s.call(
        "POST",
        "/v1/users/eve/examples",
        h,
        {"prompt": payloads[0], "chosen": payloads[1], "rejected": payloads[2]},
        expect=201,
    )
    _open(page, s.link(h, "eve")["url"])
    shown = page.locator("#instruction-list").inner_text()
    for text in payloads:
        assert text in shown
        assert text in page.locator("#example-list").inner_text()
    assert page.locator("main img, main script, main b, #instruction-list a").count() == 0
    assert page.evaluate("window.__pwned") is None
    screenshot(page, "7-markup-as-text-1280")


def test_an_ended_link_says_so(live_server: LiveServer, page: Any) -> None:
    s = live_server
    h = s.tenant("ended")
    s.call("POST", "/v1/users", h, {"id": "otto"}, expect=201)
    link = s.link(h, "otto")
    _open(page, link["url"])
    s.call("DELETE", f"/v1/users/otto/sessions/{link['id']}", h, expect=204)
    page.reload()
    page.wait_for_selector("#no-session:visible")
    assert "expired or was ended" in page.locator("#no-session").inner_text()
    assert not page.locator("#profile").is_visible()
    page.goto(s.base + "/ui/")
    page.wait_for_selector("#no-session:visible")
    assert "private link" in page.locator("#no-session").inner_text()


def test_sign_out_ends_the_session(live_server: LiveServer, page: Any) -> None:
    s = live_server
    h = s.tenant("sign-out")
    s.call("POST", "/v1/users", h, {"id": "sam"}, expect=201)
    link = s.link(h, "sam")
    _open(page, link["url"])
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector("#no-session:visible")
    token = {"Authorization": f"Bearer {link['token']}"}
    s.call("GET", "/v1/users/sam", token, expect=401)


def test_phone_width_fits_without_sideways_scrolling(
    live_server: LiveServer, chromium: Any
) -> None:
    s = live_server
    h = s.tenant("phone")
    s.call("POST", "/v1/users", h, {"id": "pia"}, expect=201)
    s.call(
        "POST",
        "/v1/users/pia/instructions",
        h,
        {"text": "Keep answers under 100 words " + "x" * 120, "applies_when": "always, really"},
        expect=201,
    )
    s.suggestion_from_edit(h, "pia")
    s.call(
        "POST",
        "/v1/users/pia/examples",
        h,
        {"prompt": "Plan my week", "chosen": "- Mon: gym", "rejected": "Monday you could..."},
        expect=201,
    )
    context = chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    page = context.new_page()
    try:
        _open(page, s.link(h, "pia")["url"])
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        # Open every editor too, then check that each control a person can reach has a
        # name a screen reader reads out.
        page.locator("#instruction-list").get_by_role("button", name="Edit").first.click()
        page.locator("#suggested-list").get_by_role("button", name="Reword").first.click()
        unnamed = page.evaluate(
            """() => [...document.querySelectorAll('input, textarea, select, button')]
                .filter((e) => e.offsetParent !== null)
                .filter((e) => e.tagName === 'BUTTON'
                    ? !(e.getAttribute('aria-label') || e.textContent.trim())
                    : e.labels.length === 0)
                .map((e) => e.outerHTML)"""
        )
        assert unnamed == []
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        screenshot(page, "8-profile-375")
        page.get_by_role("button", name="Delete my data…").click()
        screenshot(page, "9-confirm-delete-375", full_page=False)
    finally:
        context.close()


@pytest.mark.parametrize(
    ("path", "rendered"),
    [("/docs", ".opblock"), ("/redoc", "[data-section-id^='tag/']")],
)
def test_api_docs_render_with_the_network_cut_off(
    live_server: LiveServer, page: Any, path: str, rendered: str
) -> None:
    """Every request that leaves the server is refused, as on a machine without internet:
    the docs still render every operation."""
    s = live_server
    refused: list[str] = []

    def local_only(route: Any) -> None:
        if route.request.url.startswith(s.base):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    page.goto(s.base + path)
    page.wait_for_selector(rendered, timeout=30_000)
    operations = len(s.call("GET", "/openapi.json", {})["paths"])
    assert page.locator(rendered).count() >= (operations if path == "/docs" else 5)
    screenshot(page, f"10-offline{path.replace('/', '-')}-1280", full_page=False)
    assert refused == []
