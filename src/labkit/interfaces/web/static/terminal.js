// Browser terminal (interfaces/web/terminal.py) and live watch of a console (watch.py):
// xterm.js on a websocket. A terminal sends {"type":"input"} and {"type":"resize"} JSON
// messages; a watch (data-mode="watch") sends nothing. Both receive the output as binary
// frames and {"type":"exit"|"error"|"size"} JSON messages.
(function () {
  "use strict";
  var box = document.getElementById("terminal");
  var status = document.getElementById("term-status");
  if (!box || !window.Terminal || !window.FitAddon) { return; }
  var watching = box.dataset.mode === "watch";
  function say(text) { if (status) { status.textContent = text; } }

  var term = new window.Terminal({
    cursorBlink: !watching, disableStdin: watching, fontSize: 15, scrollback: 5000,
    fontFamily: "'DejaVu Sans Mono', 'Liberation Mono', monospace",
    theme: {background: "#111111", foreground: "#f5f5f5", cursor: "#f5f5f5"}
  });
  var fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  if (!watching) { fit.fit(); }

  var query = "?token=" + encodeURIComponent(box.dataset.token) + "&cols=" + term.cols + "&rows=" + term.rows;
  if (box.dataset.node) { query += "&node=" + encodeURIComponent(box.dataset.node); }
  var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  var ws = new WebSocket(scheme + "//" + window.location.host + box.dataset.ws + query);
  ws.binaryType = "arraybuffer";
  function send(msg) { if (!watching && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(msg)); } }

  ws.onopen = function () { say(box.dataset.connected); if (!watching) { term.focus(); } };
  ws.onmessage = function (ev) {
    if (typeof ev.data !== "string") { term.write(new Uint8Array(ev.data)); return; }
    var msg = JSON.parse(ev.data);
    if (msg.type === "error") { term.write("\r\n" + msg.message + "\r\n"); say(msg.message); }
    if (msg.type === "exit") { say(box.dataset.ended); }
    if (msg.type === "size" && watching) { term.resize(msg.cols, msg.rows); }
  };
  var opened = false;
  ws.addEventListener("open", function () { opened = true; });
  ws.onclose = function () {
    if (!opened) { say(box.dataset.failed); return; }  // refused, or no websocket on this server
    if (status && status.textContent === box.dataset.connected) { say(box.dataset.closed); }
  };
  term.onData(function (data) { send({type: "input", data: data}); });
  term.onResize(function (size) { send({type: "resize", cols: size.cols, rows: size.rows}); });
  window.addEventListener("resize", function () { if (!watching) { fit.fit(); } });
}());
