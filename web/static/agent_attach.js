// The composer's paperclip (templates/agent/_attach.html, web/agent/attachments.py): the agent picks a file, it is
// uploaded at once, and its URL goes into the reply on a line of its own, as visitors send theirs; the console and
// the widget show such URLs as links (images as thumbnails in the console). Delegated from the document, so a
// composer that htmx swaps in after a send works the same.
(function () {
  "use strict";

  function csrfHeaders() {
    try { return JSON.parse(document.body.getAttribute("hx-headers") || "{}"); }
    catch (e) { return {}; }
  }

  // As web/agent/attachments.py `readable` says it.
  function size(bytes) {
    if (bytes >= 1048576) return +(bytes / 1048576).toPrecision(3) + " MB";
    return bytes >= 1024 ? +(bytes / 1024).toPrecision(3) + " KB" : bytes + " bytes";
  }

  function show(attach, text, kind) {
    var status = attach.querySelector("[data-attach-status]");
    if (!status) return;
    status.textContent = text || "";
    status.hidden = !text;
    status.className = "attach-status" + (kind ? " " + kind : "");
    status.setAttribute("role", kind === "error" ? "alert" : "status");
  }

  // The reply box of this composer: the form around the paperclip, else the pane's.
  function replyBox(attach) {
    var scope = attach.closest(".composer") || attach.closest("[data-conversation]") || document;
    return scope.querySelector("textarea[name=body]");
  }

  // The URL on a line of its own at the cursor, and the cursor on the line after it.
  function insertLine(box, url) {
    var value = box.value, start = box.selectionStart, end = box.selectionEnd;
    if (typeof start !== "number") start = end = value.length;
    var before = value.slice(0, start), after = value.slice(end);
    var text = (before && before.slice(-1) !== "\n" ? "\n" : "") + url + "\n";
    if (after.charAt(0) === "\n") text = text.slice(0, -1);
    box.value = before + text + after;
    var caret = before.length + text.length + (after.charAt(0) === "\n" ? 1 : 0);
    box.focus();
    box.setSelectionRange(caret, caret);
    box.dispatchEvent(new Event("input", { bubbles: true }));  // drafts and typing see it like typed text
  }

  function upload(attach, file) {
    var max = +attach.getAttribute("data-max-bytes");
    if (max && file.size > max) {
      show(attach, file.name + " is larger than " + size(max) + ": not attached.", "error");
      return;
    }
    var button = attach.querySelector("[data-attach-button]");
    if (button) button.disabled = true;
    show(attach, "Uploading " + file.name + "…", "busy");
    var data = new FormData();
    data.append("file", file);
    fetch(attach.getAttribute("data-attach-url"), {
      method: "POST", body: data, headers: csrfHeaders(), credentials: "same-origin"
    })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (!response.ok) {
            throw new Error(body.message || (response.status === 400 || response.status === 403
              ? "The page is out of date: reload it and attach the file again."
              : "Upload failed (" + response.status + ")."));
          }
          if (!body.url) throw new Error("You seem to be logged out: reload the page and attach the file again.");
          return body;
        });
      })
      .then(function (body) {
        var box = replyBox(attach);
        if (box) insertLine(box, body.url);
        show(attach, "");
      })
      .catch(function (err) {
        var message = err instanceof TypeError || !err.message  // fetch's own failure: no answer at all
          ? "Upload failed: check the connection and try again." : err.message;
        show(attach, file.name + ": " + message, "error");
      })
      .then(function () { if (button) button.disabled = false; });
  }

  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest("[data-attach-button]");
    if (!button) return;
    var input = button.closest(".attach").querySelector("[data-attach-input]");
    if (input) input.click();
  });

  document.addEventListener("change", function (evt) {
    var input = evt.target;
    if (!input.matches || !input.matches("[data-attach-input]")) return;
    var file = input.files && input.files[0];
    input.value = "";  // the same file can be picked again
    if (file) upload(input.closest(".attach"), file);
  });
})();
