// The exec client of a web console, as small as one can be: it opens the
// pod's exec WebSocket with base64.channel.k8s.io and the user's token in
// the bearer subprotocol, decodes what the server writes and encodes what
// the user types. Go drives it through window.execconform and hears from
// it through the DevTools binding window.execconformEvent (one JSON object
// per event, never polled).
//
// base64.channel.k8s.io: every message is text; its first character is
// '0'+channel, the rest is the standard base64 of the bytes.
"use strict";

(function () {
  let ws = null;

  function emit(ev) {
    window.execconformEvent(JSON.stringify(ev));
  }

  window.execconform = {
    // open opens the exec WebSocket. Its events reach Go: open, msg (the
    // channel and the decoded bytes as a string of char codes 0-255),
    // error, close.
    open(url, protocols) {
      ws = new WebSocket(url, protocols);
      ws.onopen = () => emit({t: "open", protocol: ws.protocol});
      ws.onmessage = (e) => {
        if (typeof e.data !== "string") {
          emit({t: "bad", why: "a binary message on a base64 subprotocol"});
          return;
        }
        const ch = e.data.charCodeAt(0) - 48;
        let data;
        try {
          data = atob(e.data.slice(1));
        } catch (err) {
          emit({t: "bad", why: "channel " + ch + ": not base64: " + err});
          return;
        }
        emit({t: "msg", ch: ch, data: data});
      };
      ws.onerror = () => emit({t: "error"});
      ws.onclose = (e) => emit({t: "close", code: e.code, reason: e.reason, clean: e.wasClean});
    },
    // send writes bytes (a string of char codes 0-255) on a channel.
    send(ch, data) {
      ws.send(String.fromCharCode(48 + ch) + btoa(data));
    },
    // resize sends the terminal size on channel 4, as consoles do.
    resize(width, height) {
      this.send(4, JSON.stringify({Width: width, Height: height}));
    },
    // close closes the socket: with a code and reason, or with neither
    // (the close frame then has no status: 1005).
    close(code, reason) {
      if (code === undefined) {
        ws.close();
      } else {
        ws.close(code, reason);
      }
    },
  };
})();
