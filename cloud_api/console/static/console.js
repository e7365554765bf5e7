/* Tether console: the token, conditional polling, and the events and logs panels.
   The token lives in this tab's sessionStorage and goes out as "Authorization: Bearer",
   as to the API. Panels are htmx fragments that poll with If-None-Match; a 304 is not
   swapped. Events and logs are read from the JSON API (/v1/...) and drawn here. */
"use strict";
(function () {
  const KEY = "tether.token";
  const etags = new Map();
  const token = () => sessionStorage.getItem(KEY);
  const page = () => document.body.dataset.page;

  function toLogin(why) {
    sessionStorage.removeItem(KEY);
    const next = location.pathname + location.search;
    let url = "/ui/login?next=" + encodeURIComponent(next);
    if (why) url += "&why=" + encodeURIComponent(why);
    location.assign(url);
  }

  function api(url) {
    return fetch(url, {headers: {"Authorization": "Bearer " + token()}, cache: "no-store"});
  }

  function setLive(ok, text) {
    const live = document.getElementById("live");
    if (!live) return;
    live.textContent = text;
    live.className = "live-state " + (ok ? "ok" : "down");
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    if (cls) td.className = cls;
    row.appendChild(td);
  }

  function when(value) {
    if (value === undefined || value === null) return "";
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return isNaN(date) ? String(value) : date.toISOString().replace("T", " ").slice(0, 19);
  }

  async function notAvailable(response) {
    // the route itself is missing (this cloud has no such endpoint), not a missing node
    if (response.status !== 404) return false;
    try { return (await response.json()).message === "Not Found"; } catch (e) { return true; }
  }

  async function message(response) {
    try { const body = await response.json(); return body.message || response.statusText; }
    catch (e) { return response.statusText; }
  }

  // -- events panel -------------------------------------------------------------------
  async function drawEvents(panel) {
    const body = panel.querySelector(".events-body");
    let response;
    try { response = await api(panel.dataset.events); }
    catch (e) { body.innerHTML = '<p class="muted">The cloud is unreachable.</p>'; return; }
    if (response.status === 401) { toLogin("your token was refused: sign in again"); return; }
    if (await notAvailable(response)) {
      body.innerHTML = '<p class="muted not-available">Events are not available from this cloud.</p>';
      return;
    }
    if (!response.ok) {
      body.innerHTML = "";
      const p = document.createElement("p");
      p.className = "error-text";
      p.textContent = response.status + " " + await message(response);
      body.appendChild(p);
      return;
    }
    const items = (await response.json()).items || [];
    if (!items.length) { body.innerHTML = '<p class="muted">No events yet.</p>'; return; }
    const table = document.createElement("table");
    table.className = "events";
    table.innerHTML = "<thead><tr><th>time</th><th>node</th><th>app</th><th>kind</th><th>message</th><th class=num>count</th></tr></thead>";
    const tbody = document.createElement("tbody");
    for (const item of items) {
      const row = document.createElement("tr");
      row.className = "kind-" + String(item.kind || "").toLowerCase();
      cell(row, when(item.time)); cell(row, item.node); cell(row, item.app);
      cell(row, item.kind, "kind"); cell(row, item.message); cell(row, item.count, "num");
      tbody.appendChild(row);
    }
    table.appendChild(tbody);
    body.replaceChildren(table);
  }

  // -- logs panel ---------------------------------------------------------------------
  async function drawLogs(panel) {
    const form = panel.querySelector("form");
    if (!form) return;
    const state = panel.querySelector(".logs-state");
    const lines = panel.querySelector(".logs-lines");
    const params = new URLSearchParams({app: form.app.value, tail: form.tail.value});
    if (form.service.value.trim()) params.set("service", form.service.value.trim());
    let response;
    try { response = await api(panel.dataset.logs + "?" + params); }
    catch (e) { state.textContent = "The cloud is unreachable."; return; }
    if (response.status === 401) { toLogin("your token was refused: sign in again"); return; }
    if (await notAvailable(response)) {
      state.textContent = "Logs are not available from this cloud.";
      state.classList.add("not-available");
      return;
    }
    if (!response.ok) { state.textContent = response.status + " " + await message(response); return; }
    const body = await response.json();
    const stick = lines.scrollTop + lines.clientHeight >= lines.scrollHeight - 4;
    lines.textContent = (body.lines || []).join("\n");
    if (stick) lines.scrollTop = lines.scrollHeight;
    state.textContent = (body.lines || []).length + " lines of " + body.app +
      (body.service ? "/" + body.service : "") + (body.truncated ? " (truncated)" : "") +
      " · read " + new Date().toLocaleTimeString();
  }

  const timers = new WeakMap();
  function every(element, seconds, draw, repeat) {
    draw(element);
    const timer = setInterval(() => {
      if (!document.body.contains(element)) { clearInterval(timer); return; }
      if (!repeat || repeat(element)) draw(element);
    }, seconds * 1000);
    timers.set(element, timer);
  }

  function within(root, selector) {
    const found = Array.from(root.querySelectorAll(selector));
    if (root.matches && root.matches(selector)) found.unshift(root);
    return found;
  }

  function start(root) {
    within(root, "[data-events]").forEach((panel) => {
      if (!timers.has(panel)) every(panel, 5, drawEvents);
    });
    within(root, "[data-logs]").forEach((panel) => {
      if (timers.has(panel)) return;
      const form = panel.querySelector("form");
      if (form) form.addEventListener("change", () => drawLogs(panel));
      every(panel, 3, drawLogs, () => form && form.follow.checked);
    });
  }

  // -- htmx: the token, ETags, errors -------------------------------------------------
  document.addEventListener("htmx:configRequest", (event) => {
    event.detail.headers["Authorization"] = "Bearer " + token();
    const tag = etags.get(event.detail.path);
    if (tag) event.detail.headers["If-None-Match"] = tag;
  });
  document.addEventListener("htmx:beforeSwap", (event) => {
    const xhr = event.detail.xhr;
    if (xhr.status === 304) { event.detail.shouldSwap = false; return; }
    if (xhr.status === 401) { event.detail.shouldSwap = false; toLogin("your token was refused: sign in again"); return; }
    if (xhr.status >= 400) { event.detail.shouldSwap = true; event.detail.isError = false; }
  });
  document.addEventListener("htmx:afterRequest", (event) => {
    const xhr = event.detail.xhr;
    const path = event.detail.requestConfig && event.detail.requestConfig.path;
    if (xhr && xhr.status === 200 && path) {
      const tag = xhr.getResponseHeader("ETag");
      if (tag) etags.set(path, tag);
    }
    if (xhr && xhr.status > 0 && xhr.status < 500) setLive(true, "live · " + new Date().toLocaleTimeString());
    else setLive(false, "cloud unreachable · retrying");
  });
  document.addEventListener("htmx:sendError", () => setLive(false, "cloud unreachable · retrying"));

  // -- sign in and out ----------------------------------------------------------------
  async function signIn(event) {
    event.preventDefault();
    const error = document.getElementById("login-error");
    const given = document.getElementById("token").value.trim();
    let response;
    try {
      response = await fetch("/ui/f/namespaces", {headers: {"Authorization": "Bearer " + given}});
    } catch (e) { error.textContent = "The cloud is unreachable: check the address and try again."; return; }
    if (response.status === 401) {
      error.textContent = "This token was refused: check it (DATA_DIR/admin.token, or tether token list).";
      return;
    }
    if (!response.ok) { error.textContent = "The cloud answered " + response.status + ": try again."; return; }
    sessionStorage.setItem(KEY, given);
    const next = new URLSearchParams(location.search).get("next");
    location.assign(next && next.startsWith("/ui") && !next.startsWith("/ui/login") ? next : "/ui/");
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (page() === "login") {
      const why = new URLSearchParams(location.search).get("why");
      if (why) document.getElementById("login-error").textContent = why;
      document.getElementById("login").addEventListener("submit", signIn);
      return;
    }
    if (!token()) { toLogin(); return; }
    const logout = document.getElementById("logout");
    if (logout) logout.addEventListener("click", () => { sessionStorage.removeItem(KEY); location.assign("/ui/login"); });
    start(document);
    htmx.onLoad((element) => start(element));
  });
})();
