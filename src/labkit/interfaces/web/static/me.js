// Candidate page: while a self-check or a submission runs, poll every 2 s and reload the
// page once it is finished, so the result shows without a manual refresh.
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box || !box.dataset.running) { return; }
  function poll() {
    fetch("/me/status.json", {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (resp) { return resp.json(); })
      .then(function (data) {
        if (data.running) { window.setTimeout(poll, 2000); } else { window.location.replace("/me"); }
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }
  window.setTimeout(poll, 2000);
}());
