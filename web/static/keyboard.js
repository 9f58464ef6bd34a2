// Keyboard shortcuts for the console; the "?" help dialog in templates/agent/console.html lists them.
// Letters never fire while the agent types in a field (or with Ctrl/Cmd/Alt held); Alt+↓/↑ work anywhere.
(function () {
  "use strict";

  function typingIn(el) {
    return !!el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }
  function activePane() { return document.querySelector("#panes > .pane.active"); }

  // Next (+1) or previous (-1) row of the list, from the active conversation's row, and open it.
  function step(by) {
    var links = Array.prototype.slice.call(document.querySelectorAll("#conversation-list .row a[data-open-conversation]"));
    if (!links.length) return;
    var pane = activePane(), id = pane ? pane.dataset.conversation : null;
    var current = links.findIndex(function (a) { return a.closest(".row").dataset.conversation === id; });
    var next = current < 0 ? (by > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, current + by));
    if (next === current) return;
    links[next].scrollIntoView({ block: "nearest" });
    links[next].click();
  }

  function clickAction(name) {
    var pane = activePane(), button = pane && pane.querySelector('[data-action="' + name + '"]');
    if (button) button.click();
  }

  function focusComposer() {
    var pane = activePane(), box = pane && pane.querySelector(".composer textarea[name=body]");
    if (box) box.focus();
  }

  function help() {
    var dialog = document.getElementById("shortcuts");
    if (dialog && !dialog.open) dialog.showModal();  // Esc closes it: the browser's own dialog behaviour
  }

  var keys = {
    j: function () { step(1); },
    k: function () { step(-1); },
    c: focusComposer,
    a: function () { clickAction("assign-me"); },
    e: function () { clickAction("resolve"); },
    x: function () {
      var pane = activePane();
      if (pane && window.deskbell) window.deskbell.closePane(pane);
    },
    "/": function () {
      var search = document.getElementById("search");
      if (search) search.focus();
    },
    "?": help,
  };

  document.addEventListener("keydown", function (evt) {
    if (evt.defaultPrevented || evt.isComposing || !document.getElementById("panes")) return;
    if (evt.altKey && !evt.ctrlKey && !evt.metaKey && (evt.key === "ArrowDown" || evt.key === "ArrowUp")) {
      evt.preventDefault();
      step(evt.key === "ArrowDown" ? 1 : -1);
      return;
    }
    if (evt.key === "Escape" && typingIn(evt.target) && evt.target.closest(".composer")) {
      evt.target.blur();  // out of the composer, so the letters work again
      return;
    }
    if (evt.ctrlKey || evt.metaKey || evt.altKey || typingIn(evt.target) || document.querySelector("dialog[open]")) {
      return;
    }
    var action = keys[evt.key];
    if (!action) return;
    evt.preventDefault();
    action();
  });

  document.addEventListener("click", function (evt) {
    if (evt.target.closest && evt.target.closest("[data-shortcut-help]")) help();
  });
})();
