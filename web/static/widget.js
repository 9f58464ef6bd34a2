// Deskbell visitor widget (protocol v1, docs/protocol.md). Embed:
//   <script src="https://HOST/widget.js" data-site="SITE_KEY" async></script>
// The UI lives in a shadow root so the host page's CSS cannot reach it. Message text is only ever set with
// textContent. Every message gets its client_id before it is sent and stays in a localStorage outbox until
// the server's ack, so a reload or a dropped connection re-sends it and the server stores it once.
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-site]");
  if (!script || window.Deskbell) return;
  var siteKey = script.getAttribute("data-site");
  var origin = new URL(script.src, location.href).origin;
  var store = "deskbell:" + siteKey + ":";

  function load(key, fallback) {
    try { var v = localStorage.getItem(store + key); return v === null ? fallback : JSON.parse(v); }
    catch (e) { return fallback; }
  }
  function save(key, value) {
    try { localStorage.setItem(store + key, JSON.stringify(value)); } catch (e) { /* private mode */ }
  }
  function newId() {
    return (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(16).slice(2));
  }

  // shownSeq: the highest seq shown on this page; a new page asks for the whole thread again.
  var state = { token: load("token", null), shownSeq: 0, outbox: load("outbox", []),
                ws: null, open: false, retry: 0, seen: {}, mode: "ws", wsFailures: 0, visitorId: null,
                recovering: false };

  // -- UI --------------------------------------------------------------------------------------------------
  var host = document.createElement("div");
  host.setAttribute("data-deskbell", "");
  host.style.cssText = "all: initial; position: fixed; z-index: 2147483000; right: 20px; bottom: 20px;" +
                       "display: block !important;";
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    "<style>" +
    ":host{all:initial}*{box-sizing:border-box;font:14px/1.4 system-ui,sans-serif}" +
    ".launch{width:56px;height:56px;border-radius:50%;border:0;background:#2956d6;color:#fff;cursor:pointer;box-shadow:0 4px 12px #0003;display:flex;align-items:center;justify-content:center}" +
    ".panel{display:none;position:absolute;right:0;bottom:68px;width:340px;height:460px;max-height:80vh;background:#fff;border-radius:12px;box-shadow:0 8px 30px #0003;flex-direction:column;overflow:hidden}" +
    ".panel.open{display:flex}.head{background:#2956d6;color:#fff;padding:12px 14px;font-weight:600}" +
    ".list{flex:1;overflow-y:auto;padding:10px;display:flex;flex-direction:column;gap:6px;background:#f5f6f8}" +
    ".m{max-width:80%;padding:7px 10px;border-radius:10px;background:#fff;white-space:pre-wrap;overflow-wrap:anywhere}" +
    ".m.visitor{align-self:flex-end;background:#dfe8ff}.m.pending{opacity:.6}.m small{display:block;color:#6b7280;font-size:11px}" +
    ".m[data-state=failed]{outline:1px solid #b42318}.m[data-state=failed] small{color:#b42318}" +
    "form{display:flex;border-top:1px solid #e4e7ec}textarea{flex:1;border:0;padding:10px;resize:none;outline:none}" +
    "form button{border:0;background:none;color:#2956d6;font-weight:600;padding:0 14px;cursor:pointer}" +
    "@media (max-width:480px){.panel{position:fixed;inset:0;width:auto;height:auto;max-height:none;border-radius:0}}" +
    "</style>" +
    "<div class='panel' role='dialog' aria-label='Chat'><div class='head'>Chat with us</div>" +
    "<div class='list' role='log' aria-live='polite'></div>" +
    "<form><textarea rows='2' aria-label='Message' placeholder='Type a message…'></textarea>" +
    "<button type='submit'>Send</button></form></div>" +
    "<button class='launch' aria-label='Open chat'><svg width='26' height='26' viewBox='0 0 24 24' aria-hidden='true'>" +
    "<path fill='currentColor' d='M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z'/></svg></button>";
  var panel = root.querySelector(".panel"), list = root.querySelector(".list");
  var form = root.querySelector("form"), box = root.querySelector("textarea");

  function render(frame, pending) {
    var key = frame.client_id ? "c:" + frame.client_id : "s:" + frame.seq;
    var node = state.seen[key];
    if (!node) {
      node = document.createElement("div");
      node.className = "m " + frame.sender;
      var who = document.createElement("small");
      who.textContent = frame.sender === "visitor" ? "You" : (frame.author || "Agent");
      var body = document.createElement("div");
      body.className = "b";
      body.textContent = frame.body;
      node.appendChild(who); node.appendChild(body);
      list.appendChild(node);
      state.seen[key] = node;
    }
    node.classList.toggle("pending", !!pending);
    node.setAttribute("data-state", pending ? "sending" : "sent");
    list.scrollTop = list.scrollHeight;
  }

  function toggle(open) {
    state.open = open === undefined ? !state.open : open;
    panel.classList.toggle("open", state.open);
    if (state.open) box.focus();
  }
  root.querySelector(".launch").addEventListener("click", function () { toggle(); });
  box.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var body = box.value;
    if (!body.trim()) return;
    var msg = { client_id: newId(), body: body };
    updateOutbox(function (queued) { return queued.concat([msg]); });
    box.value = "";
    render({ client_id: msg.client_id, sender: "visitor", body: body }, true);
    // Behind anything still waiting to be re-sent, so the server stores them in the order they were typed.
    flushOutbox();
  });

  // -- connection ------------------------------------------------------------------------------------------
  // WebSocket first; after two sockets that never open (a proxy that blocks them), long-polling with the
  // same frames. `inflight` keeps one copy of each unacked message on the wire at a time.
  var inflight = {};

  function send(frame) {
    if (!state.ready) return;
    if (frame.client_id) inflight[frame.client_id] = true;
    if (state.mode === "poll") { postQueue.push(frame); postFrames(); return; }
    if (state.ws && state.ws.readyState === 1) state.ws.send(JSON.stringify(frame));
  }

  // The outbox is shared with the visitor's other tabs: re-read it before each change, or one tab would
  // overwrite a message that another one queued.
  function updateOutbox(change) {
    state.outbox = change(load("outbox", state.outbox));
    save("outbox", state.outbox);
  }
  function dropFromOutbox(clientId) {
    updateOutbox(function (queued) { return queued.filter(function (m) { return m.client_id !== clientId; }); });
  }

  // After a retry error the server refuses everything but the oldest unacked message until that one is sent
  // again (docs/protocol.md, "Errors"): so re-send only it, and the rest in order once it is acked.
  function flushOutbox() {
    var pending = state.recovering ? state.outbox.slice(0, 1) : state.outbox;
    pending.forEach(function (m) {
      if (!inflight[m.client_id]) send({ type: "message", client_id: m.client_id, body: m.body });
    });
  }

  function onFrame(frame) {
    if (frame.type === "welcome") {
      state.ready = true;
      state.retry = 0;
      state.recovering = false;  // a new connection has refused nothing
      flushOutbox();
    } else if (frame.type === "message") {
      render(frame, false);
      state.shownSeq = Math.max(state.shownSeq, frame.seq);
    } else if (frame.type === "ack") {
      delete inflight[frame.client_id];
      dropFromOutbox(frame.client_id);
      var node = state.seen["c:" + frame.client_id];
      if (node) { node.classList.remove("pending"); node.setAttribute("data-state", "sent"); }
      if (state.recovering) { state.recovering = false; flushOutbox(); }
    } else if (frame.type === "ping") {
      send({ type: "pong" });
    } else if (frame.type === "error" && frame.client_id) {
      delete inflight[frame.client_id];
      if (frame.retry) {
        var head = state.outbox[0];
        if (!state.recovering || (head && head.client_id === frame.client_id)) {
          state.recovering = true;
          setTimeout(flushOutbox, 1000);
        }
        return;
      }
      // Refused for good (too long, invalid): say so beside the message and stop re-sending it.
      dropFromOutbox(frame.client_id);
      var failed = state.seen["c:" + frame.client_id];
      if (failed) {
        failed.classList.remove("pending");
        failed.setAttribute("data-state", "failed");
        failed.querySelector("small").textContent = "Not delivered: " + frame.message;
      }
    }
  }

  function backoff() {
    return Math.min(30000, 500 * Math.pow(2, state.retry++)) * (0.5 + Math.random() / 2);
  }

  function reconnect() {
    state.ready = false;
    inflight = {};
    setTimeout(connect, backoff());
  }

  function connect() {
    fetch(origin + "/api/v1/widget/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ site_key: siteKey, visitor_token: state.token,
                             page: { url: location.href, title: document.title, referrer: document.referrer } })
    }).then(function (r) {
      if (!r.ok) throw new Error("session " + r.status);
      return r.json();
    }).then(function (s) {
      if (s.visitor_id !== state.visitorId) {
        // A new visitor (first visit, or an expired token): its thread starts empty.
        if (state.visitorId) { list.textContent = ""; state.seen = {}; state.shownSeq = 0; showOutbox(); }
        state.visitorId = s.visitor_id;
      }
      state.token = s.visitor_token; save("token", s.visitor_token);
      root.querySelector(".head").textContent = s.site_name || "Chat with us";
      if (state.mode === "poll") { poll(true); return; }
      var ws = new WebSocket(s.ws_url + "?token=" + encodeURIComponent(s.visitor_token));
      var opened = false;
      state.ws = ws;
      ws.onopen = function () {
        opened = true;
        state.wsFailures = 0;
        ws.send(JSON.stringify({ type: "hello", last_seq: state.shownSeq }));
      };
      ws.onmessage = function (e) { try { onFrame(JSON.parse(e.data)); } catch (err) { /* ignore */ } };
      ws.onclose = function (e) {
        if (e.code === 4401) { state.token = null; save("token", null); }
        if (!opened && ++state.wsFailures >= 2) state.mode = "poll";
        reconnect();
      };
    }).catch(reconnect);
  }

  // -- long-polling ----------------------------------------------------------------------------------------
  var postQueue = [], posting = false;

  function pollUrl() { return origin + "/lp/visitor?token=" + encodeURIComponent(state.token); }

  function poll(first) {
    // The first poll answers at once, so the welcome (and the outbox flush) need not wait for a message.
    fetch(pollUrl() + "&last_seq=" + state.shownSeq + (first ? "&wait=0" : "")).then(function (r) {
      if (!r.ok) throw r;
      return r.json();
    }).then(function (data) {
      data.frames.forEach(onFrame);
      poll();
    }).catch(function (r) {
      if (r && r.status === 401) { state.token = null; save("token", null); }
      reconnect();
    });
  }

  function postFrames() {
    if (posting || !postQueue.length) return;
    posting = true;
    var batch = postQueue.splice(0, 10);
    fetch(pollUrl(), { method: "POST", headers: { "Content-Type": "text/plain" },
                       body: JSON.stringify({ frames: batch }) })
      .then(function (r) { if (!r.ok) throw r; return r.json(); })
      .then(function (data) { data.frames.forEach(onFrame); })
      .catch(function () {
        batch.forEach(function (f) { if (f.client_id) delete inflight[f.client_id]; });
        setTimeout(flushOutbox, backoff());
      })
      .then(function () { posting = false; postFrames(); });
  }

  function showOutbox() {
    state.outbox.forEach(function (m) { render({ client_id: m.client_id, sender: "visitor", body: m.body }, true); });
  }

  // Show what is still waiting to be delivered (even offline), then connect.
  showOutbox();
  (document.body || document.documentElement).appendChild(host);
  connect();
  window.Deskbell = { open: function () { toggle(true); }, close: function () { toggle(false); }, toggle: toggle };
})();
