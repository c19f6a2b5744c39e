/* A flow's page after a save (bot/console/flows.py): asks the bot, every half second, whether it runs
   the saved files yet (the hot reload) or refused them, and says so in the page. */
(function () {
  "use strict";
  var box = document.getElementById("reload-status");
  if (!box || !box.dataset.saved) {
    return;
  }
  var line = document.getElementById("reload-line");
  var tries = 0;
  var MAX_TRIES = 60;

  function say(text, className) {
    line.textContent = text;
    line.className = className;
  }

  function check() {
    fetch(box.dataset.url, {credentials: "same-origin"}).then(function (response) {
      if (!response.ok) {
        throw new Error("answer " + response.status);
      }
      return response.json();
    }).then(function (status) {
      if (status.current) {
        say("The bot reloaded: it runs the saved files now (flows version " + status.running + ").", "ok reloaded");
      } else if (status.refused) {
        say("The bot refused to reload the files and still runs version " + status.running + ": " +
            status.refused.join(" · "), "error");
      } else if (!status.reload) {
        say("RELOAD_FLOWS is off: restart the bot to run the change.", "muted");
      } else if (tries < MAX_TRIES) {
        tries += 1;
        say("Waiting for the bot to reload the files…", "muted");
        setTimeout(check, 500);
      } else {
        say("The bot has not reloaded the files after 30 seconds: see its log, or python -m bot status.", "error");
      }
    }).catch(function (error) {
      say("Could not ask the bot whether it reloaded: " + error, "error");
    });
  }
  check();
})();
