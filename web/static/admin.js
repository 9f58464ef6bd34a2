// The admin panel (templates/admin/): Copy buttons. A button with data-copy="#id" copies that element's text and
// shows the "Copied." next to it. Loaded from the admin layout only; no inline script (the CSP forbids it).
(function () {
  "use strict";

  function flash(button) {
    var note = button.nextElementSibling;
    if (!note || !note.classList.contains("copied")) return;
    note.hidden = false;
    setTimeout(function () { note.hidden = true; }, 2000);
  }

  function fallback(source) {
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try { return document.execCommand("copy"); } catch (e) { return false; }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { flash(button); }, function () {
        if (fallback(source)) flash(button);
      });
    } else if (fallback(source)) {
      flash(button);
    }
  });
})();
