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

  // After a successful send htmx swaps in an empty composer: keep the cursor in it.
  document.addEventListener("htmx:afterSwap", function (evt) {
    if (evt.target.classList && evt.target.classList.contains("composer")) {
      var box = evt.target.querySelector("textarea");
      if (box) box.focus();
    }
  });
})();
