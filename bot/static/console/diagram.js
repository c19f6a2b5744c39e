/* Draws a flow's diagram: the Mermaid source in <pre id="diagram"> becomes inline SVG, drawn by the
   vendored renderer (bot/static/vendor/mermaid/), offline. One script for both pages that draw it:
   the console serves this file, and `graph --html` inlines it (bot/flows/graph_page.py).
   securityLevel "strict" (Mermaid's default, said out loud): labels are sanitised and no click
   handler runs, whatever a state name holds. A failure is shown in the page (#failed), not only in
   the browser's console. textflowDiagram.draw(source) draws new source in place (the editor). */
(function () {
  "use strict";
  mermaid.initialize({startOnLoad: false, securityLevel: "strict", theme: "neutral"});

  function failed(error) {
    var note = document.getElementById("failed");
    if (note) {
      note.textContent = "The diagram could not be drawn: " + error + " (the Mermaid source is below).";
      note.hidden = false;
    }
  }

  function draw(source) {
    var diagram = document.getElementById("diagram");
    if (typeof source === "string" && diagram) {  // a fresh element: Mermaid draws an element once
      var fresh = document.createElement("pre");
      fresh.className = "mermaid";
      fresh.id = "diagram";
      fresh.textContent = source;
      diagram.replaceWith(fresh);
      diagram = fresh;
    }
    if (!diagram || !diagram.textContent.trim()) {  // nothing to draw (yet): no error either
      return Promise.resolve();
    }
    var note = document.getElementById("failed");
    if (note) {
      note.hidden = true;
    }
    return mermaid.run({nodes: [diagram]}).catch(failed);
  }

  window.textflowDiagram = {draw: draw};
  draw();
})();
