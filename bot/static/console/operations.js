// The Operations page's broadcasts: polls broadcasts.json every 2 s while one runs (and every
// 15 s otherwise, so one started in a terminal shows up), while the tab is visible, and redraws
// the rows. Every value is set as text, never as HTML.
"use strict";

(function () {
  const table = document.getElementById("broadcasts");
  if (!table) return;
  const rows = document.getElementById("broadcast-rows");
  const status = document.getElementById("broadcasts-status");
  const runningMs = Math.max(1, Number(table.dataset.pollSeconds) || 2) * 1000;
  const idleMs = Math.max(1, Number(table.dataset.idlePollSeconds) || 15) * 1000;
  let running = table.dataset.running === "yes";
  let timer = null;
  let busy = false;

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function rowOf(item) {
    const tr = element("tr", null, item.standing.replace(/ /g, "-"));
    const what = element("td");
    what.append(element("code", item.flow), " ", element("span", item.standing, "badge standing"),
                element("div", item.name, "muted name"));
    tr.appendChild(what);
    const progress = element("td");
    const bar = element("progress");
    bar.max = item.requested || 1;
    bar.value = item.settled;
    progress.append(bar, element("div", item.settled + " of " + item.requested + " settled", "muted"));
    tr.appendChild(progress);
    for (const [field, className] of [["sent", "sent"], ["skipped", "skipped"], ["failed", "failed"],
                                      ["in_doubt", "in-doubt"], ["waiting", "waiting"]]) {
      tr.appendChild(element("td", item[field], className));
    }
    const heard = element("td", item.heard + " ago");
    heard.appendChild(element("div", "started " + item.started, "muted"));
    tr.appendChild(heard);
    return tr;
  }

  function draw(items) {
    rows.replaceChildren();
    for (const item of items) rows.appendChild(rowOf(item));
    if (!items.length) {
      const tr = element("tr", null, "empty");
      const td = element("td", "No broadcast in the last day.", "muted");
      td.colSpan = 8;
      tr.appendChild(td);
      rows.appendChild(tr);
    }
  }

  async function refresh() {
    if (busy || document.visibilityState !== "visible") return;
    busy = true;
    try {
      const answer = await fetch(table.dataset.endpoint, { headers: { Accept: "application/json" },
                                                           credentials: "same-origin" });
      if (answer.status === 401 || answer.redirected) throw new Error("logged out: reload the page to log in");
      const data = await answer.json();
      if (data.problem) throw new Error(data.problem);
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      draw(data.items);
      running = data.running;
      status.textContent = "As of " + data.at + (running ? ", updated every " + runningMs / 1000 + " s while a broadcast runs."
                                                          : ".");
      status.classList.remove("error");
    } catch (error) {
      status.textContent = "Not updated (" + error.message + "); trying again.";
      status.classList.add("error");
    } finally {
      busy = false;
      schedule();
    }
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, running ? runningMs : idleMs);
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") refresh();
  });
  schedule();
})();
