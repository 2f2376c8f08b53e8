// Live dashboard: polls the cohort's status.json every 2 s and updates the table cells.
// Text only (textContent): nothing from the server is parsed as HTML.
(function () {
  "use strict";
  var table = document.getElementById("dashboard");
  var words = JSON.parse(document.getElementById("i18n").textContent);
  var updated = document.getElementById("updated");
  var summary = document.getElementById("summary");
  if (!table) { return; }
  var url = "/cohorts/" + table.dataset.cohort + "/status.json";

  function run(r) {
    if (!r) { return "\u2014"; }
    return r.status === "complete" ? r.score + "/" + r.max_score : (words.run[r.status] || r.status);
  }
  function set(row, field, text) {
    var cell = row.querySelector('[data-field="' + field + '"]');
    if (cell && cell.textContent !== text) { cell.textContent = text; }
  }
  function refresh() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (resp) { if (!resp.ok) { throw new Error(resp.status); } return resp.json(); })
      .then(function (data) {
        data.candidates.forEach(function (c) {
          var row = table.querySelector('tr[data-id="' + c.id + '"]');
          if (!row) { return; }
          var status = words.status[c.status] || c.status;
          if (c.running) { status += " \u2014 " + words.running.replace("%s", words.mode[c.running] || c.running); }
          if (c.detail) { status += " \u2014 " + c.detail; }
          set(row, "status", status);
          set(row, "health", c.health ? (words.health[c.health] || c.health) : "\u2014");
          set(row, "selfcheck", run(c.selfcheck));
          set(row, "grade", run(c.grade));
          set(row, "final", run(c.final));
        });
        var n = data.counts;
        var text = words.summary.replace("%up", n.up).replace("%total", data.total)
          .replace("%launching", n.launching + n.resetting).replace("%failed", n.failed);
        if (summary.textContent !== text) { summary.textContent = text; }
        updated.textContent = words.updated.replace("%s", new Date().toLocaleTimeString());
      })
      .catch(function () { /* keep the last values; try again at the next tick */ })
      .finally(function () { window.setTimeout(refresh, 2000); });
  }
  window.setTimeout(refresh, 2000);
}());
