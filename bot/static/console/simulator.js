// The Simulator page: a phone talking to the running bot through the console's JSON endpoints
// (CSRF token in the X-CSRF-Token header). Each answer carries the turns it made, drawn at once;
// a poll of where the sender stands notices turns made elsewhere (a timer the server fired) and
// then redraws the stored transcript. Every value is set as text, never as HTML.
"use strict";

(function () {
  const root = document.getElementById("simulator");
  if (!root) return;
  const csrf = document.querySelector("main").dataset.csrf;
  const pollMs = Math.max(1, Number(root.dataset.pollSeconds) || 3) * 1000;
  const from = document.getElementById("sim-from");
  const screen = document.getElementById("sim-screen");
  const compose = document.getElementById("sim-compose");
  const body = document.getElementById("sim-body");
  const media = document.getElementById("sim-media");
  const send = document.getElementById("sim-send");
  const waitForm = document.getElementById("sim-wait-form");
  const waitFor = document.getElementById("sim-wait");
  const reset = document.getElementById("sim-reset");
  const where = document.getElementById("sim-where");
  const conversation = document.getElementById("sim-conversation");
  const problem = document.getElementById("sim-error");
  const sentMedia = new Map(); // a message's pictures, which the store does not keep: shown while the page lives
  let version = null;
  let busy = false;

  function element(tag, className, text) {
    const made = document.createElement(tag);
    if (className) made.className = className;
    if (text !== undefined) made.textContent = text;
    return made;
  }

  function pictures(list) {
    const ul = element("ul", "media");
    for (const picture of list) {
      const li = element("li");
      if (picture.href && picture.inline) {
        const img = element("img");
        img.src = picture.href;
        img.alt = "picture";
        li.appendChild(img);
      } else if (picture.href) {
        const a = element("a", "", picture.url);
        a.href = picture.href;
        a.rel = "noopener noreferrer";
        a.target = "_blank";
        li.appendChild(a);
      } else {
        li.appendChild(element("code", "", picture.url));
      }
      ul.appendChild(li);
    }
    return ul;
  }

  function turnItem(turn) {
    const li = element("li", "turn turn-" + turn.kind);
    li.dataset.sid = turn.sid;
    if (turn.kind === "message" || turn.kind === "simulated") {
      const mine = element("div", "bubble me", turn.body);
      const sent = turn.media.length ? turn.media : sentMedia.get(turn.sid) || [];
      if (sent.length) mine.appendChild(pictures(sent));
      li.appendChild(mine);
    } else {
      li.appendChild(element("div", "event", turn.label + (turn.after ? " after " + turn.after : "")));
    }
    for (const reply of turn.replies) {
      const bubble = element("div", "bubble bot", reply.text);
      if (reply.media.length) bubble.appendChild(pictures(reply.media));
      li.appendChild(bubble);
    }
    if (turn.trace.length) {
      const trace = element("ol", "trace");
      for (const step of turn.trace) {
        const item = element("li");
        item.append(element("code", "", step.before), " → ", element("code", "", step.after), " ",
                    element("span", "rule", step.rule));
        trace.appendChild(item);
      }
      li.appendChild(trace);
    }
    for (const note of turn.notified) {
      li.appendChild(element("div", "notified", "notify " + note.to + " (not sent): " + note.text));
    }
    return li;
  }

  function show(turns, replace) {
    if (replace) screen.replaceChildren();
    for (const turn of turns) screen.appendChild(turnItem(turn));
    screen.scrollTop = screen.scrollHeight;
  }

  function showState(state) {
    version = state.version;
    where.replaceChildren(element("code", "", state.where));
    if (state.expired) where.append(" ", element("span", "badge warn", "expired"));
    if (state.opted_out) where.append(" ", element("span", "badge warn", "opted out"));
    if (state.timer) {
      const when = state.timer.due ? "due now" : "in " + state.timer.in;
      where.append(element("br"), "Next timer " + when + " (" + state.timer.state + ")");
    }
    if (state.known) where.append(element("br"), "Last message " + state.idle + " ago");
    conversation.href = state.href;
  }

  function fail(message) {
    problem.textContent = message;
    problem.hidden = !message;
  }

  async function call(method, path, payload) {
    const options = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    let url = "/console/simulator/" + path;
    if (method === "POST") {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = csrf;
      options.body = JSON.stringify(Object.assign({ from: from.value.trim() }, payload));
    } else {
      url += "?" + new URLSearchParams({ from: from.value.trim() }).toString();
    }
    const answer = await fetch(url, options);
    if (answer.status === 401 || answer.redirected) throw new Error("logged out: reload the page to log in");
    let data;
    try {
      data = await answer.json();
    } catch (error) {
      throw new Error("the console answered " + answer.status);
    }
    if (!answer.ok) throw new Error(data.error || "HTTP " + answer.status);
    return data;
  }

  async function act(work) {
    if (busy) return;
    busy = true;
    send.disabled = true;
    try {
      fail("");
      await work();
    } catch (error) {
      fail(error.message);
    } finally {
      busy = false;
      send.disabled = false;
    }
  }

  async function load() {
    const data = await call("GET", "turns");
    show(data.turns, true);
    showState(data.state);
    const url = new URL(window.location.href);
    url.searchParams.set("from", from.value.trim());
    window.history.replaceState(null, "", url.toString());
  }

  compose.addEventListener("submit", function (event) {
    event.preventDefault();
    const text = body.value;
    const picture = media.value.trim();
    if (!text && !picture) return;
    act(async function () {
      const data = await call("POST", "send", { body: text, media: picture ? [picture] : [] });
      for (const turn of data.turns) sentMedia.set(turn.sid, turn.media);
      show(data.turns, false);
      showState(data.state);
      body.value = "";
      media.value = "";
      body.focus();
    });
  });

  waitForm.addEventListener("submit", function (event) {
    event.preventDefault();
    act(async function () {
      const data = await call("POST", "wait", { duration: waitFor.value.trim() });
      screen.appendChild(element("li", "turn turn-wait", "")).appendChild(element("div", "event", "Waited " + data.waited));
      show(data.turns, false);
      showState(data.state);
    });
  });

  reset.addEventListener("click", function () {
    act(async function () {
      const data = await call("POST", "reset", {});
      show(data.turns, false);
      showState(data.state);
    });
  });

  from.addEventListener("change", function () {
    act(load);
  });

  async function poll() {
    if (busy || document.visibilityState !== "visible") return;
    busy = true;
    try {
      const data = await call("GET", "state");
      if (data.state.version !== version) {
        busy = false;
        await act(load); // changed elsewhere (a timer the server fired): draw what the store kept
      } else {
        showState(data.state);
      }
    } catch (error) {
      fail(error.message);
    } finally {
      busy = false;
    }
  }

  act(load);
  window.setInterval(poll, pollMs);
})();
