// Browser terminal: xterm.js on a websocket to the node's console (see interfaces/web/terminal.py).
// Sends {"type":"input"} and {"type":"resize"} JSON messages; receives the output as binary
// frames and {"type":"exit"|"error"} JSON messages.
(function () {
  "use strict";
  var box = document.getElementById("terminal");
  var status = document.getElementById("term-status");
  if (!box || !window.Terminal || !window.FitAddon) { return; }
  function say(text) { if (status) { status.textContent = text; } }

  var term = new window.Terminal({
    cursorBlink: true, fontSize: 15, scrollback: 5000,
    fontFamily: "'DejaVu Sans Mono', 'Liberation Mono', monospace",
    theme: {background: "#111111", foreground: "#f5f5f5", cursor: "#f5f5f5"}
  });
  var fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();

  var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  var url = scheme + "//" + window.location.host + box.dataset.ws +
    "?node=" + encodeURIComponent(box.dataset.node) + "&token=" + encodeURIComponent(box.dataset.token) +
    "&cols=" + term.cols + "&rows=" + term.rows;
  var ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  function send(msg) { if (ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(msg)); } }

  ws.onopen = function () { say(box.dataset.connected); term.focus(); };
  ws.onmessage = function (ev) {
    if (typeof ev.data !== "string") { term.write(new Uint8Array(ev.data)); return; }
    var msg = JSON.parse(ev.data);
    if (msg.type === "error") { term.write("\r\n" + msg.message + "\r\n"); say(msg.message); }
    if (msg.type === "exit") { say(box.dataset.ended); }
  };
  ws.onclose = function () { if (status && status.textContent === box.dataset.connected) { say(box.dataset.closed); } };
  term.onData(function (data) { send({type: "input", data: data}); });
  term.onResize(function (size) { send({type: "resize", cols: size.cols, rows: size.rows}); });
  window.addEventListener("resize", function () { fit.fit(); });
}());
