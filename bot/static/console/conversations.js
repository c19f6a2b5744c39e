// The Conversations page's live list: polls live.json every few seconds (while the tab is
// visible) and redraws the rows; "Show more" reads the next page by its cursor. Every value is
// set as text, never as HTML.
"use strict";

(function () {
  const table = document.getElementById("live");
  if (!table) return;
  const rows = document.getElementById("live-rows");
  const status = document.getElementById("live-status");
  const more = document.getElementById("live-more");
  const pollMs = Math.max(1, Number(table.dataset.pollSeconds) || 3) * 1000;
  const pageSize = Number(table.dataset.pageSize) || 50;
  let shown = Math.max(rows.querySelectorAll("tr:not(.empty)").length, pageSize);
  let cursor = table.dataset.cursor || null;
  let busy = false;
  // A page opened on an older page (no script's "Older" link) is not the live head: leave it be.
  const live = !new URLSearchParams(window.location.search).has("cursor");

  function url(params) {
    const query = new URLSearchParams();
    if (table.dataset.flow) query.set("flow", table.dataset.flow);
    if (table.dataset.state) query.set("state", table.dataset.state);
    for (const [name, value] of Object.entries(params)) query.set(name, String(value));
    return table.dataset.endpoint + "?" + query.toString();
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    if (className) {
      const code = document.createElement("code");
      code.textContent = text;
      td.appendChild(code);
    } else {
      td.textContent = text;
    }
    row.appendChild(td);
    return td;
  }

  function badge(parent, text, warn) {
    const span = document.createElement("span");
    span.className = warn ? "badge warn" : "badge";
    span.textContent = text;
    parent.append(" ", span);
  }

  function rowOf(item) {
    const tr = document.createElement("tr");
    const number = document.createElement("td");
    const link = document.createElement("a");
    link.href = item.href;
    link.textContent = item.number;
    number.appendChild(link);
    if (item.simulated) badge(number, "simulated", false);
    tr.appendChild(number);
    cell(tr, item.flow, "code");
    const state = cell(tr, item.state, "code");
    if (item.gone) badge(state, "no longer in the flow", true);
    const idle = cell(tr, item.idle + " ago");
    if (item.expired) badge(idle, "expired", true);
    return tr;
  }

  function draw(items, append) {
    if (!append) rows.replaceChildren();
    for (const item of items) rows.appendChild(rowOf(item));
    if (!rows.children.length) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = cell(tr, "Nobody is in a flow right now.");
      td.colSpan = 4;
      td.className = "muted";
      rows.appendChild(tr);
    }
  }

  async function read(params) {
    const answer = await fetch(url(params), { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (answer.status === 401 || answer.redirected) throw new Error("logged out: reload the page to log in");
    const data = await answer.json();
    if (!answer.ok) throw new Error(data.error || "HTTP " + answer.status);
    return data;
  }

  async function refresh() {
    if (busy || document.visibilityState !== "visible") return;
    busy = true;
    try {
      const data = await read({ limit: shown });
      draw(data.items, false);
      cursor = data.cursor;
      more.hidden = !cursor;
      status.textContent = "Live: as of " + data.at + ", updated every " + pollMs / 1000 + " s.";
      status.classList.remove("error");
    } catch (error) {
      status.textContent = "Not updated (" + error.message + "); trying again.";
      status.classList.add("error");
    } finally {
      busy = false;
    }
  }

  more.addEventListener("click", async function () {
    if (!cursor || busy) return;
    busy = true;
    try {
      const data = await read({ limit: pageSize, cursor: cursor });
      draw(data.items, true);
      shown += data.items.length;
      cursor = data.cursor;
      more.hidden = !cursor;
    } catch (error) {
      status.textContent = "Could not show more (" + error.message + ").";
    } finally {
      busy = false;
    }
  });

  if (live) {
    window.setInterval(refresh, pollMs);
    document.addEventListener("visibilitychange", refresh);
  } else {
    status.textContent = "An older page: not updated live.";
  }
})();
