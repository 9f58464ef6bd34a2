// The console's own behaviour on top of htmx: no inline scripts, no framework.
(function () {
  "use strict";

  // A message fragment can arrive twice (live event, then catch-up after a reconnect): keep the first.
  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    if (evt.detail.type !== "message") return;
    var tpl = document.createElement("template");
    tpl.innerHTML = evt.detail.data.trim();
    var node = tpl.content.firstElementChild;
    if (node && node.id && document.getElementById(node.id)) evt.preventDefault();
  });

  function scrollThread() {
    var thread = document.getElementById("thread");
    if (thread) thread.scrollTop = thread.scrollHeight;
  }
  document.addEventListener("htmx:sseMessage", scrollThread);
  document.addEventListener("DOMContentLoaded", scrollThread);

  // Ctrl/Cmd+Enter sends the reply.
  document.addEventListener("keydown", function (evt) {
    if (evt.key === "Enter" && (evt.ctrlKey || evt.metaKey) && evt.target.closest(".composer")) {
      evt.preventDefault();
      htmx.trigger(evt.target.closest("form"), "submit");
    }
  });

  // POST a small form to the console with the page's CSRF token (the body's hx-headers, as htmx sends it).
  function post(url, fields) {
    var headers = { "Content-Type": "application/x-www-form-urlencoded" };
    try {
      var extra = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
      for (var k in extra) headers[k] = extra[k];
    } catch (e) { /* no token: the server refuses, and nothing else breaks */ }
    return fetch(url, { method: "POST", headers: headers, body: new URLSearchParams(fields || {}),
                        credentials: "same-origin" }).catch(function () { /* presence: best effort */ });
  }

  // Typing: tell the visitor at most every 2 s while the agent types in the composer.
  var TYPING_EVERY = 2000, typingSentAt = 0;
  document.addEventListener("input", function (evt) {
    var thread = document.getElementById("thread");
    if (!thread || !evt.target.closest || !evt.target.closest(".composer")) return;
    var now = Date.now();
    if (now - typingSentAt < TYPING_EVERY || !evt.target.value) return;
    typingSentAt = now;
    post(thread.getAttribute("data-typing-url"));
  });

  // "Visitor is typing…": the SSE `typing` event fills #typing; empty it 4 s after the last one, or as soon
  // as the visitor's message arrives.
  var TYPING_SHOWN = 4000, typingTimer = null;
  function clearTyping() {
    var note = document.getElementById("typing");
    if (note) note.textContent = "";
  }
  document.addEventListener("htmx:sseMessage", function (evt) {
    if (evt.detail.type === "typing") {
      clearTimeout(typingTimer);
      typingTimer = setTimeout(clearTyping, TYPING_SHOWN);
    } else if (evt.detail.type === "message" && /msg-visitor/.test(evt.detail.data)) {
      clearTimeout(typingTimer);
      clearTyping();
    }
  });

  // Read receipts: while the page is visible, the agent has read the open conversation up to its newest
  // message; tell the server (which tells the visitor) whenever that grows.
  var readSent = 0;
  function markRead() {
    var thread = document.getElementById("thread");
    if (!thread || document.visibilityState !== "visible") return;
    var newest = 0;
    thread.querySelectorAll(".msg[data-seq]").forEach(function (m) {
      newest = Math.max(newest, parseInt(m.getAttribute("data-seq"), 10) || 0);
    });
    if (newest <= readSent) return;
    readSent = newest;
    post(thread.getAttribute("data-read-url"), { seq: String(newest) });
  }
  document.addEventListener("DOMContentLoaded", markRead);
  document.addEventListener("visibilitychange", markRead);
  document.addEventListener("htmx:sseMessage", function (evt) {
    if (evt.detail.type === "message") markRead();
  });

  // After a successful send htmx swaps in an empty composer: keep the cursor in it.
  document.addEventListener("htmx:afterSwap", function (evt) {
    if (evt.target.classList && evt.target.classList.contains("composer")) {
      typingSentAt = 0;  // the next keystroke starts a new reply: say so at once
      var box = evt.target.querySelector("textarea");
      if (box) box.focus();
    }
  });
})();
