/* The flow editor (bot/console/flow_edit.py): line numbers beside the textarea, and as you type (a
   moment after you stop) the text goes to the lint endpoint, which answers with lint's findings
   (line:col), the diagram's Mermaid source and what the change does to people in the flow now.
   Everything shown is set as text, never as HTML. Saving is the form's plain POST. */
(function () {
  "use strict";
  var source = document.getElementById("source");
  if (!source) {
    return;
  }
  var gutter = document.getElementById("gutter");
  var csrf = document.querySelector("main").dataset.csrf;
  var saveButton = document.getElementById("save");
  var saveNote = document.getElementById("save-note");
  var lintNote = document.getElementById("lint-note");
  var WAIT_MS = 400;
  var timer = null;
  var asked = 0;  // requests sent; an answer older than the one shown is dropped
  var shown = 0;
  var drawn = document.getElementById("diagram").textContent;
  var saved = source.dataset.unsaved ? null : source.value;  // after a refused save: not saved
  var submitting = false;
  var escaped = false;

  function numberLines() {
    var count = source.value.split("\n").length;
    var numbers = [];
    for (var line = 1; line <= count; line += 1) {
      numbers.push(line);
    }
    gutter.textContent = numbers.join("\n");
    gutter.scrollTop = source.scrollTop;
  }

  function goTo(line, col) {
    var lines = source.value.split("\n");
    var offset = 0;
    for (var index = 0; index < line - 1 && index < lines.length; index += 1) {
      offset += lines[index].length + 1;
    }
    offset += Math.max(0, col - 1);
    source.focus();
    source.setSelectionRange(offset, offset);
    var height = parseFloat(getComputedStyle(source).lineHeight) || 18;
    source.scrollTop = Math.max(0, (line - 4) * height);
  }

  function element(tag, className, text) {
    var made = document.createElement(tag);
    if (className) {
      made.className = className;
    }
    if (text !== undefined) {
      made.textContent = text;
    }
    return made;
  }

  function showProblems(problems, blocking) {
    var list = document.getElementById("problems");
    list.replaceChildren();
    var errors = 0;
    problems.forEach(function (problem) {
      if (problem.severity === "error") {
        errors += 1;
      }
      var item = element("li", problem.severity + (problem.here ? " here" : ""));
      var where = element(problem.here ? "button" : "span", "where", problem.file + ":" + problem.line + ":" + problem.col);
      if (problem.here) {
        where.type = "button";
        where.title = "Go to line " + problem.line;
        where.addEventListener("click", function () { goTo(problem.line, problem.col); });
      }
      item.append(where, " ", element("span", "severity", problem.severity), " ", problem.message);
      if (problem.hint) {
        item.append(" ", element("span", "hint", "(" + problem.hint + ")"));
      }
      list.appendChild(item);
    });
    var warnings = problems.length - errors;
    document.getElementById("lint-summary").textContent =
      errors + " error" + (errors === 1 ? "" : "s") + ", " + warnings + " warning" + (warnings === 1 ? "" : "s");
    saveButton.disabled = blocking > 0;
    saveNote.textContent = blocking > 0 ? "Fix the errors to save." : "";
  }

  function showImpact(impact) {
    var list = document.getElementById("impact");
    list.replaceChildren();
    impact.forEach(function (effect) {
      list.appendChild(element("li", "warning", effect.message));
    });
    document.getElementById("no-impact").hidden = impact.length > 0;
    var box = document.getElementById("confirm-box");
    box.hidden = impact.length === 0;
    if (box.hidden) {
      document.getElementById("confirm").checked = false;
    }
  }

  function showDiagram(mermaidSource) {
    var note = document.getElementById("diagram-note");
    if (!mermaidSource) {
      note.textContent = drawn ? "The flow has errors: the diagram shows the last version without them."
        : "No diagram while the flow has errors.";
      note.hidden = false;
      return;
    }
    note.hidden = true;
    if (mermaidSource !== drawn) {
      drawn = mermaidSource;
      window.textflowDiagram.draw(mermaidSource);
    }
  }

  function lint() {
    asked += 1;
    var mine = asked;
    lintNote.textContent = "Checking…";
    fetch(source.dataset.lintUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify({text: source.value})
    }).then(function (response) {
      return response.text().then(function (body) {
        var parsed = null;
        try { parsed = JSON.parse(body); } catch (error) { parsed = {error: body}; }
        return {ok: response.ok, status: response.status, body: parsed};
      });
    }).then(function (answer) {
      if (mine < shown) {
        return;
      }
      shown = mine;
      if (!answer.ok) {
        lintNote.textContent = "Could not check the text: " + (answer.body.error || ("answer " + answer.status));
        return;
      }
      lintNote.textContent = "";
      showProblems(answer.body.problems, answer.body.blocking);
      showImpact(answer.body.impact);
      showDiagram(answer.body.mermaid);
    }).catch(function (error) {
      lintNote.textContent = "Could not check the text: " + error;
    });
  }

  source.addEventListener("input", function () {
    numberLines();
    clearTimeout(timer);
    timer = setTimeout(lint, WAIT_MS);
  });
  source.addEventListener("scroll", function () { gutter.scrollTop = source.scrollTop; });
  source.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      escaped = true;
      return;
    }
    if (event.key === "Tab" && !event.shiftKey && !escaped) {
      event.preventDefault();  // YAML allows no tabs: indent with two spaces
      var start = source.selectionStart;
      source.setRangeText("  ", start, source.selectionEnd, "end");
      source.dispatchEvent(new Event("input"));
    }
    escaped = false;
  });
  document.getElementById("editor-form").addEventListener("submit", function () { submitting = true; });
  window.addEventListener("beforeunload", function (event) {
    if (!submitting && source.value !== saved) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
  numberLines();
})();
