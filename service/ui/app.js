// The end user's profile page. It talks to Tailor's JSON API with the session token
// from the link (#user=...&session=...&token=...), kept in sessionStorage so a reload
// works and the token leaves the address bar at once. Every piece of profile text is
// inserted with textContent: it is user-controlled and must never become markup.
"use strict";

(() => {
  const STORE_KEY = "tailor.session";
  const KNOWN_INSTRUCTION_FIELDS = new Set([
    "id", "version", "text", "applies_when", "always_on", "status", "source",
    "created_at", "updated_at",
  ]);
  const LIMIT = 500;

  const $ = (id) => document.getElementById(id);
  let session = null; // {user, session, token}
  let canRestore = false;
  let busy = 0;

  // --- session --------------------------------------------------------------------
  function readSession() {
    const hash = window.location.hash.replace(/^#/, "");
    if (hash) {
      const params = new URLSearchParams(hash);
      const token = params.get("token");
      const user = params.get("user");
      if (token && user) {
        const found = { user, session: params.get("session") || "", token };
        try { window.sessionStorage.setItem(STORE_KEY, JSON.stringify(found)); } catch (e) { /* private mode: keep in memory */ }
        window.history.replaceState(null, "", window.location.pathname);
        return found;
      }
    }
    try {
      const stored = window.sessionStorage.getItem(STORE_KEY);
      return stored ? JSON.parse(stored) : null;
    } catch (e) {
      return null;
    }
  }

  function forgetSession() {
    try { window.sessionStorage.removeItem(STORE_KEY); } catch (e) { /* nothing kept */ }
    session = null;
  }

  // --- API ------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // Relative to /ui/, so the page also works when Tailor is served under a path prefix.
  const ROOT = "../";

  function userPath(suffix) {
    return ROOT + "v1/users/" + encodeURIComponent(session.user) + (suffix || "");
  }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + session.token };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    busy += 1;
    document.body.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(path, init);
      if (response.status === 204) return null;
      const data = await response.json().catch(() => null);
      if (!response.ok) {
        const error = (data && data.error) || {};
        throw new ApiError(response.status, error.code || "error", error.message || response.statusText);
      }
      return data;
    } finally {
      busy -= 1;
      if (busy === 0) document.body.removeAttribute("aria-busy");
    }
  }

  // --- messages -------------------------------------------------------------------
  let sayTimer = 0;
  function say(text) {
    $("alert").hidden = true;
    $("status").textContent = text;
    window.clearTimeout(sayTimer);
    sayTimer = window.setTimeout(() => { $("status").textContent = ""; }, 6000);
  }

  function fail(error) {
    if (error instanceof ApiError && error.status === 401) {
      forgetSession();
      showNoSession("Your link has expired or was ended. Ask your app for a new one.");
      return;
    }
    $("status").textContent = "";
    const alert = $("alert");
    alert.textContent = error instanceof ApiError ? error.message : "Something went wrong. Try again.";
    alert.hidden = false;
  }

  function showNoSession(text) {
    $("profile").hidden = true;
    $("who").hidden = true;
    if (text) $("no-session-text").textContent = text;
    $("no-session").hidden = false;
  }

  // --- small DOM helpers (text only) ------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else if (key in node) node[key] = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function badge(text, kind) {
    return el("span", { class: "badge" + (kind ? " " + kind : ""), text });
  }

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
  }

  function label(key) {
    return key.replace(/_/g, " ");
  }

  function display(value) {
    if (value === null || value === undefined) return "—";
    if (Array.isArray(value)) return value.map(display).join(", ");
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  let uid = 0;
  function field(labelText, control) {
    uid += 1;
    control.id = "f" + uid;
    return [el("label", { htmlFor: control.id, text: labelText }), control];
  }

  function checkbox(labelText, checked) {
    uid += 1;
    const box = el("input", { type: "checkbox", id: "f" + uid, checked });
    return { box, row: el("div", { class: "check" }, box, el("label", { htmlFor: box.id, text: labelText })) };
  }

  // --- standing instructions --------------------------------------------------------
  function instructionMeta(item) {
    const meta = [];
    if (item.status === "disabled") meta.push(badge("Disabled", "muted"));
    if (item.always_on) meta.push(badge("Always on", "on"));
    else if (item.applies_when) meta.push(badge("Only when: " + item.applies_when, "cond"));
    else meta.push(badge("When relevant", "cond"));
    meta.push(el("span", { class: "small", text: "version " + item.version + " · " + when(item.updated_at) }));
    return meta;
  }

  function extraFields(item, target) {
    // Fields this page does not know yet (e.g. a derived kind or domains) are shown as
    // they come, so the page keeps up with the API.
    target.replaceChildren();
    for (const [key, value] of Object.entries(item)) {
      if (KNOWN_INSTRUCTION_FIELDS.has(key) || value === null || value === undefined) continue;
      if (Array.isArray(value) && value.length === 0) continue;
      target.append(el("dt", { text: label(key) }), el("dd", { text: display(value) }));
    }
    target.hidden = target.childElementCount === 0;
  }

  function renderInstruction(item) {
    const node = $("instruction-template").content.firstElementChild.cloneNode(true);
    node.dataset.id = item.id;
    node.id = "item-" + item.id;
    remember(item.id, "standing_instruction", item.text);
    if (item.status === "disabled") node.classList.add("disabled");
    node.querySelector(".text").textContent = item.text;
    node.querySelector(".meta").replaceChildren(...instructionMeta(item));
    extraFields(item, node.querySelector(".extra"));
    const toggle = node.querySelector('[data-action="toggle-status"]');
    toggle.textContent = item.status === "disabled" ? "Turn on" : "Turn off";
    const name = '"' + item.text.slice(0, 40) + (item.text.length > 40 ? "…" : "") + '"';
    for (const button of node.querySelectorAll("button")) {
      button.setAttribute("aria-label", button.textContent + " " + name);
    }
    node.querySelector('[data-action="edit"]').addEventListener("click", () => openEditor(node, item));
    toggle.addEventListener("click", () => act(async () => {
      await api("PATCH", userPath("/instructions/" + item.id), {
        status: item.status === "disabled" ? "active" : "disabled",
      });
      await loadInstructions();
      say(item.status === "disabled" ? "Instruction turned on." : "Instruction turned off.");
    }));
    const historyButton = node.querySelector('[data-action="history"]');
    historyButton.addEventListener("click", () => toggleHistory(node, item, historyButton));
    node.querySelector('[data-action="delete"]').addEventListener("click", () => act(async () => {
      await api("DELETE", userPath("/instructions/" + item.id));
      await loadInstructions();
      say("Instruction deleted.");
      $("instructions-title").focus();
    }));
    return node;
  }

  function openEditor(node, item) {
    const slot = node.querySelector(".slot-edit");
    const editButton = node.querySelector('[data-action="edit"]');
    if (slot.firstChild) {
      slot.replaceChildren();
      editButton.setAttribute("aria-expanded", "false");
      return;
    }
    editButton.setAttribute("aria-expanded", "true");
    const text = el("textarea", { rows: 3, maxLength: 1000, required: true, value: item.text });
    const condition = el("input", { type: "text", maxLength: 500, value: item.applies_when || "" });
    const always = checkbox("Always on: apply to every message", item.always_on);
    const form = el(
      "form",
      { class: "form inline", noValidate: true },
      ...field("Instruction", text),
      ...field("Only when (leave empty for none)", condition),
      always.row,
      el(
        "div",
        { class: "actions" },
        el("button", { type: "submit", class: "primary", text: "Save" }),
        el("button", { type: "button", text: "Cancel", "data-action": "cancel" }),
      ),
    );
    form.querySelector('[data-action="cancel"]').addEventListener("click", () => {
      slot.replaceChildren();
      editButton.setAttribute("aria-expanded", "false");
      editButton.focus();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(async () => {
        const changes = {};
        if (text.value.trim() !== item.text) changes.text = text.value.trim();
        if (condition.value.trim() !== (item.applies_when || "")) changes.applies_when = condition.value.trim();
        if (always.box.checked !== item.always_on) changes.always_on = always.box.checked;
        if (Object.keys(changes).length === 0) {
          slot.replaceChildren();
          return;
        }
        await api("PATCH", userPath("/instructions/" + item.id), changes);
        await loadInstructions();
        say("Instruction saved.");
        focusItem("instruction-list", item.id);
      });
    });
    slot.replaceChildren(form);
    text.focus();
  }

  async function toggleHistory(node, item, button) {
    const slot = node.querySelector(".slot-history");
    if (slot.firstChild) {
      slot.replaceChildren();
      button.setAttribute("aria-expanded", "false");
      return;
    }
    await act(async () => {
      const history = await api("GET", userPath("/instructions/" + item.id + "/history"));
      const list = el("ol", { class: "history", "aria-label": "Earlier versions" });
      for (const version of history.versions) {
        const current = version.valid_to === null && version.version === item.version;
        const row = el(
          "li",
          {},
          el("strong", { text: "Version " + version.version + (current ? " (current)" : "") }),
          el("span", { class: "small", text: " · " + when(version.valid_from) + " · " + version.status }),
          el("p", { class: "text", text: version.text }),
          el("p", {
            class: "small",
            text: version.always_on
              ? "Always on"
              : version.applies_when ? "Only when: " + version.applies_when : "When relevant",
          }),
        );
        // Restore: shown only when the server offers the operation (checked in its
        // OpenAPI document), so the page works with servers that predate it.
        if (canRestore && !current) {
          const restore = el("button", {
            type: "button",
            text: "Restore this version",
            "aria-label": "Restore version " + version.version,
          });
          restore.addEventListener("click", () => act(async () => {
            await api("POST", userPath("/instructions/" + item.id + "/restore"), { version: version.version });
            await loadInstructions();
            say("Version " + version.version + " restored.");
            focusItem("instruction-list", item.id);
          }));
          row.append(restore);
        }
        list.append(row);
      }
      slot.replaceChildren(el("h4", { text: "History" }), list);
      button.setAttribute("aria-expanded", "true");
    });
  }

  async function loadInstructions() {
    const page = await api("GET", userPath("/instructions?limit=" + LIMIT));
    const list = $("instruction-list");
    list.replaceChildren(...page.items.map(renderInstruction));
    $("instruction-empty").hidden = page.items.length > 0;
  }

  // --- learned preferences ------------------------------------------------------------
  function editBlock(edit) {
    if (!edit) return null;
    return el(
      "details",
      { class: "edit-source", open: true },
      el("summary", { text: "From your edit" }),
      el("p", { class: "small", text: "You asked: " }, el("span", { class: "quote", text: edit.context })),
      el("div", { class: "diff" },
        el("div", {}, el("span", { class: "small", text: "The assistant wrote" }), el("p", { class: "before", text: edit.draft })),
        el("div", {}, el("span", { class: "small", text: "You changed it to" }), el("p", { class: "after", text: edit.edited })),
      ),
    );
  }

  function renderPreference(pref, edits) {
    const node = el("li", { class: "card item", "data-id": pref.id, id: "item-" + pref.id });
    remember(pref.id, "inferred_preference", pref.text);
    const name = '"' + pref.text.slice(0, 40) + (pref.text.length > 40 ? "…" : "") + '"';
    node.append(el("p", { class: "text", text: pref.text }));
    const meta = el("p", { class: "meta" }, badge(pref.status.charAt(0).toUpperCase() + pref.status.slice(1), pref.status === "accepted" ? "on" : "muted"),
      el("span", { class: "small", text: "version " + pref.version + " · " + when(pref.updated_at) }));
    node.append(meta);
    node.append(editBlock(edits.get(pref.source_edit_id)));
    const actions = el("div", { class: "actions" });
    const button = (text, handler, cls) => {
      const b = el("button", { type: "button", text, class: cls, "aria-label": text + " " + name });
      b.addEventListener("click", () => act(handler));
      actions.append(b);
    };
    if (pref.status === "suggested") {
      button("Accept", async () => {
        await api("PATCH", userPath("/preferences/" + pref.id), { status: "accepted" });
        await loadPreferences();
        say("Preference accepted.");
      }, "primary");
    }
    if (pref.status === "suggested" || pref.status === "accepted") {
      const reword = el("button", { type: "button", text: "Reword", "aria-label": "Reword " + name });
      reword.addEventListener("click", () => openReword(node, pref));
      actions.append(reword);
      button("Reject", async () => {
        await api("PATCH", userPath("/preferences/" + pref.id), { status: "rejected" });
        await loadPreferences();
        say("Preference rejected; it will not be used.");
      });
      button("Make it a standing instruction", async () => {
        await api("POST", userPath("/preferences/" + pref.id + "/promote"), {});
        await Promise.all([loadPreferences(), loadInstructions()]);
        say("Added to your standing instructions.");
      });
    }
    if (pref.status === "rejected") {
      button("Restore as suggestion", async () => {
        await api("PATCH", userPath("/preferences/" + pref.id), { status: "suggested" });
        await loadPreferences();
        say("Back among the suggestions.");
      });
    }
    if (actions.childElementCount) node.append(actions);
    node.append(el("div", { class: "slot-edit" }));
    return node;
  }

  function openReword(node, pref) {
    const slot = node.querySelector(".slot-edit");
    if (slot.firstChild) {
      slot.replaceChildren();
      return;
    }
    const text = el("textarea", { rows: 2, maxLength: 1000, value: pref.text });
    const form = el("form", { class: "form inline", noValidate: true },
      ...field("New wording", text),
      el("div", { class: "actions" },
        el("button", { type: "submit", class: "primary", text: "Save wording" }),
        el("button", { type: "button", text: "Cancel", "data-action": "cancel" })));
    form.querySelector('[data-action="cancel"]').addEventListener("click", () => slot.replaceChildren());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(async () => {
        await api("PATCH", userPath("/preferences/" + pref.id), { text: text.value.trim() });
        await loadPreferences();
        say("Preference reworded.");
        focusItem(pref.status === "suggested" ? "suggested-list" : "accepted-list", pref.id);
      });
    });
    slot.replaceChildren(form);
    text.focus();
  }

  async function loadPreferences() {
    const [prefs, editPage] = await Promise.all([
      api("GET", userPath("/preferences?limit=" + LIMIT)),
      api("GET", userPath("/edits?limit=" + LIMIT)),
    ]);
    const edits = new Map(editPage.items.map((edit) => [edit.id, edit]));
    const missing = prefs.items
      .map((pref) => pref.source_edit_id)
      .filter((id) => id && !edits.has(id));
    for (const id of new Set(missing)) {
      try { edits.set(id, await api("GET", userPath("/edits/" + id))); } catch (e) { /* shown without it */ }
    }
    const groups = { suggested: [], accepted: [], other: [] };
    for (const pref of prefs.items) {
      (groups[pref.status] || groups.other).push(renderPreference(pref, edits));
    }
    for (const name of ["suggested", "accepted", "other"]) {
      $(name + "-list").replaceChildren(...groups[name]);
      $(name + "-empty").hidden = groups[name].length > 0;
    }
  }

  // --- suggestions captured from conversations -------------------------------------------
  function renderSuggestion(item) {
    const node = el("li", { class: "card item", "data-id": item.id, id: "item-" + item.id });
    const name = '"' + item.text.slice(0, 40) + (item.text.length > 40 ? "…" : "") + '"';
    node.append(el("p", { class: "text", text: item.text }));
    node.append(el("p", { class: "meta" },
      badge(item.action === "supersede" ? "Replaces an instruction" : "New", "muted"),
      el("span", { class: "small", text: "you said: \u201c" + item.quote + "\u201d · " + when(item.last_seen_at) })));
    const actions = el("div", { class: "actions" });
    const button = (text, handler, cls) => {
      const b = el("button", { type: "button", text, class: cls, "aria-label": text + " " + name });
      b.addEventListener("click", () => act(handler));
      actions.append(b);
    };
    button("Accept", async () => {
      await api("POST", userPath("/suggestions/" + item.id + "/accept"));
      await Promise.all([loadSuggestions(), loadInstructions()]);
      say("Added to your standing instructions.");
    }, "primary");
    button("Reject", async () => {
      await api("POST", userPath("/suggestions/" + item.id + "/reject"));
      await loadSuggestions();
      say("Rejected; it will not be suggested again.");
    });
    node.append(actions);
    return node;
  }

  async function loadSuggestions() {
    const page = await api("GET", userPath("/suggestions"));
    $("captured-list").replaceChildren(...page.data.map(renderSuggestion));
    $("captured-empty").hidden = page.data.length > 0;
  }

  // --- preference examples --------------------------------------------------------------
  function renderExample(example) {
    remember(example.id, "preference_example", example.prompt);
    const node = el("li", { class: "card item", "data-id": example.id, id: "item-" + example.id },
      el("p", { class: "small", text: "Request" }),
      el("p", { class: "text", text: example.prompt }),
      el("div", { class: "diff" },
        el("div", {}, el("span", { class: "small", text: "Preferred" }), el("p", { class: "after", text: example.chosen })),
        el("div", {}, el("span", { class: "small", text: "Not wanted" }), el("p", { class: "before", text: example.rejected }))));
    const remove = el("button", {
      type: "button", class: "danger", text: "Delete",
      "aria-label": "Delete example " + '"' + example.prompt.slice(0, 40) + '"',
    });
    remove.addEventListener("click", () => act(async () => {
      await api("DELETE", userPath("/examples/" + example.id));
      await loadExamples();
      say("Example deleted.");
    }));
    node.append(el("div", { class: "actions" }, remove));
    return node;
  }

  async function loadExamples() {
    const page = await api("GET", userPath("/examples?limit=" + LIMIT));
    $("example-list").replaceChildren(...page.items.map(renderExample));
    $("example-empty").hidden = page.items.length > 0;
  }

  // --- recent turns ("why did the assistant do that") ---------------------------------------
  // What each loaded card is called, so a turn can name the items it used and link to them.
  const known = new Map(); // id -> {name, kind}
  const REASONS = {
    always_on: "it is always on",
    constraint_domain: "it is a rule for this kind of request",
    matched_condition: "its condition matched the message",
    matched_request: "the message is like a request it is meant for",
    matched_text: "it is relevant to the message",
    whole_profile: "your whole profile fitted, so all of it was used",
    nearest_prompt: "the request was similar",
    nearest_edit_context: "it was learned from a similar edit",
  };
  const KIND_NAMES = {
    standing_instruction: "Instruction",
    preference_example: "Example",
    inferred_preference: "Learned preference",
  };

  function remember(id, kind, name) {
    known.set(id, { kind, name: name.length > 80 ? name.slice(0, 80) + "…" : name });
  }

  function renderTurnItem(item) {
    const card = known.get(item.id);
    const what = (KIND_NAMES[item.kind] || item.kind) + (item.version && item.kind === "standing_instruction" ? " (version " + item.version + ")" : "");
    const name = card
      ? el("a", { href: "#item-" + item.id, text: card.name })
      : el("span", { class: "small", text: "no longer in your profile" });
    const why = REASONS[item.reason] || label(item.reason);
    const score = typeof item.score === "number" && item.reason !== "always_on" ? " · match " + item.score.toFixed(2) : "";
    return el("li", { "data-item": item.id }, el("strong", { text: what + ": " }), name,
      el("span", { class: "small", text: " — used because " + why + score }));
  }

  function renderTurn(turn) {
    const node = el("li", { class: "card item", "data-id": turn.id },
      el("p", { class: "meta" },
        el("span", { text: when(turn.at) }),
        el("span", { class: "small", text: turn.endpoint === "chat" ? " · chat" : " · profile for your app" })));
    if (turn.message) node.append(el("p", { class: "text quote", text: turn.message }));
    if (turn.items.length === 0) {
      node.append(el("p", { class: "small", text: "Nothing from your profile was used." }));
    } else {
      node.append(el("ul", { class: "used", "aria-label": "Items used" }, ...turn.items.map(renderTurnItem)));
    }
    return node;
  }

  async function loadTurns() {
    let page;
    try {
      page = await api("GET", userPath("/turns?limit=50"));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404 && error.code === "not_found") {
        $("turns").hidden = true; // a server without the record of turns
        return;
      }
      throw error;
    }
    $("turn-list").replaceChildren(...page.items.map(renderTurn));
    $("turn-empty").hidden = page.items.length > 0;
  }

  // --- plumbing ---------------------------------------------------------------------------
  async function act(work) {
    try {
      await work();
    } catch (error) {
      fail(error);
    }
  }

  function focusItem(listId, id) {
    const item = $(listId).querySelector('[data-id="' + CSS.escape(id) + '"] button');
    if (item) item.focus();
  }

  async function detectRestore() {
    try {
      const response = await fetch(ROOT + "openapi.json", { cache: "no-store", credentials: "omit" });
      const spec = await response.json();
      canRestore = Object.entries(spec.paths || {}).some(
        ([path, ops]) => /^\/v1\/users\/\{[^}]+\}\/instructions\/\{[^}]+\}\/restore$/.test(path) && ops.post,
      );
    } catch (e) {
      canRestore = false;
    }
  }

  function wireForms() {
    $("instruction-add").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = $("new-text").value.trim();
      if (!text) {
        fail(new ApiError(422, "empty", "Write the instruction first."));
        $("new-text").focus();
        return;
      }
      act(async () => {
        const body = { text, always_on: $("new-always").checked, source: "user" };
        const condition = $("new-condition").value.trim();
        if (condition) body.applies_when = condition;
        await api("POST", userPath("/instructions"), body);
        event.target.reset();
        await loadInstructions();
        say("Instruction added.");
      });
    });
    $("example-add").addEventListener("submit", (event) => {
      event.preventDefault();
      const body = {
        prompt: $("ex-prompt").value.trim(),
        chosen: $("ex-chosen").value.trim(),
        rejected: $("ex-rejected").value.trim(),
      };
      if (!body.prompt || !body.chosen || !body.rejected) {
        fail(new ApiError(422, "empty", "Fill in the request and both answers."));
        return;
      }
      act(async () => {
        await api("POST", userPath("/examples"), body);
        event.target.reset();
        await loadExamples();
        say("Example added.");
      });
    });
    $("export").addEventListener("click", () => act(async () => {
      const data = await api("GET", userPath("/export"));
      const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
      const url = URL.createObjectURL(blob);
      const link = el("a", { href: url, download: "tailor-profile-" + session.user + ".json" });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      say("Your data was downloaded.");
    }));
    const dialog = $("confirm-delete");
    $("delete-all").addEventListener("click", () => {
      dialog.returnValue = "";
      dialog.showModal();
    });
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "delete") {
        $("delete-all").focus();
        return;
      }
      act(async () => {
        await api("DELETE", userPath(""));
        forgetSession();
        $("profile").hidden = true;
        $("who").hidden = true;
        $("deleted").hidden = false;
        $("deleted").focus();
        say("Your data has been deleted.");
      });
    });
    $("sign-out").addEventListener("click", () => act(async () => {
      if (session.session) {
        await api("DELETE", userPath("/sessions/" + encodeURIComponent(session.session))).catch(() => null);
      }
      forgetSession();
      showNoSession("You are signed out. Open a new link from your app to come back.");
      say("Signed out.");
    }));
  }

  async function start() {
    wireForms();
    session = readSession();
    if (!session) {
      showNoSession();
      return;
    }
    $("who-name").textContent = session.user;
    $("who").hidden = false;
    $("profile").hidden = false;
    await detectRestore();
    await act(async () => {
      await Promise.all([loadInstructions(), loadPreferences(), loadSuggestions(), loadExamples()]);
      await loadTurns(); // after the cards, so each item used can name and link to its card
      document.body.dataset.ready = "true";
    });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
