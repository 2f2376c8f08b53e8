// Candidate page: while a self-check or a submission runs, or while the lab is being
// launched or reset, poll every 2 s and reload the page once that is over, so the result
// (or the brief of a lab just up) shows without a manual refresh.
(function () {
  "use strict";
  var box = document.getElementById("progress");
  var waiting = ["planned", "launching", "resetting"];
  if (!box) { return; }
  var status = box.dataset.status;
  if (!box.dataset.running && waiting.indexOf(status) < 0) { return; }
  function poll() {
    fetch("/me/status.json", {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (resp) { return resp.json(); })
      .then(function (data) {
        var same = waiting.indexOf(status) >= 0 && data.status === status;
        if (data.running || same) { window.setTimeout(poll, 2000); } else { window.location.replace("/me"); }
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }
  window.setTimeout(poll, 2000);
}());
