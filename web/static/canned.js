// The composer's helpers (templates/agent/_composer.html) and the action bar's time zone
// (templates/agent/_actions.html); no inline scripts, no framework:
// - saved replies: "/" at the start of a word opens a list from /console/canned/search (web/agent/canned.py),
//   filtered as you type; arrows move, Enter or Tab inserts the text in place of "/shortcut", Esc closes;
// - Reply / Private note: the switch points the form at the reply or the notes route;
// - emoji: the picker inserts at the cursor;
// - snooze: the browser's time zone goes with the form, and times are shown in it.
(function () {
  "use strict";

  var TOKEN = /(^|\s)\/([A-Za-z0-9_-]{0,32})$/;

  function composerOf(node) {
    return node && node.closest ? node.closest("form.composer") : null;
  }

  // Put `text` in place of box.value[start:end], leave the cursor after it, and tell listeners (drafts, typing).
  function replaceRange(box, start, end, text) {
    box.focus();
    box.setRangeText(text, start, end, "end");
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }

  // -- saved replies ------------------------------------------------------------------------------------------

  var menu = null;      // the open list: {box, list, items, active, start, end}
  var asked = 0;        // the newest search sent; older answers are dropped
  var inserting = false;
  var nextId = 0;

  function closeMenu() {
    if (!menu) return;
    menu.list.remove();
    menu.box.removeAttribute("aria-activedescendant");
    menu.box.removeAttribute("aria-controls");
    menu = null;
  }

  function highlight(index) {
    if (!menu || !menu.items.length) return;
    menu.active = (index + menu.items.length) % menu.items.length;
    var options = menu.list.querySelectorAll("[role=option]");
    options.forEach(function (li, i) {
      li.setAttribute("aria-selected", i === menu.active ? "true" : "false");
    });
    var current = options[menu.active];
    menu.box.setAttribute("aria-activedescendant", current.id);
    current.scrollIntoView({ block: "nearest" });
  }

  function choose(index) {
    if (!menu) return;
    var item = menu.items[index], box = menu.box, token = tokenAt(box);
    var start = token ? token.start : menu.start, end = token ? token.end : menu.end;
    closeMenu();
    inserting = true;
    try {
      replaceRange(box, start, end, item.body);
    } finally {
      inserting = false;
    }
  }

  // The search's answer for an earlier query, narrowed to what is typed now (the answer for it is on its way):
  // the list never offers what no longer matches. The server's rules, roughly: shortcut prefix, or words of the
  // text starting with each word typed.
  function matches(item, query) {
    if (!query || item.shortcut.indexOf(query) === 0) return true;
    return query.split(/\s+/).every(function (word) {
      var escaped = word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      return new RegExp("(^|[^\\p{L}\\p{N}_])" + escaped, "iu").test(item.body);
    });
  }

  function showMenu(box, token, all) {
    closeMenu();
    var results = all.filter(function (item) { return matches(item, token.query.toLowerCase()); });
    if (!results.length) return;
    var list = document.createElement("ul");
    list.className = "canned-menu";
    list.id = "canned-menu-" + (++nextId);
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "Saved replies");
    results.forEach(function (item, i) {
      var li = document.createElement("li");
      li.id = list.id + "-" + i;
      li.setAttribute("role", "option");
      li.setAttribute("data-shortcut", item.shortcut);
      var name = document.createElement("strong");
      name.textContent = "/" + item.shortcut;
      var text = document.createElement("span");
      text.className = "canned-preview";
      text.textContent = item.body.length > 90 ? item.body.slice(0, 90) + "…" : item.body;
      li.appendChild(name);
      li.appendChild(text);
      if (item.shared) {
        var tag = document.createElement("span");
        tag.className = "canned-shared";
        tag.textContent = "shared";
        li.appendChild(tag);
      }
      // mousedown, not click: the textarea keeps its focus and its cursor.
      li.addEventListener("mousedown", function (evt) {
        evt.preventDefault();
        choose(i);
      });
      list.appendChild(li);
    });
    box.insertAdjacentElement("afterend", list);
    box.setAttribute("aria-controls", list.id);
    menu = { box: box, list: list, items: results, all: all, active: 0, start: token.start, end: token.end };
    highlight(0);
  }

  // The "/word" just before the cursor, if the cursor is at the end of one.
  function tokenAt(box) {
    if (box.selectionStart !== box.selectionEnd) return null;
    var before = box.value.slice(0, box.selectionStart);
    var found = TOKEN.exec(before);
    if (!found) return null;
    return { query: found[2], start: before.length - found[2].length - 1, end: before.length };
  }

  function lookUp(box) {
    var form = composerOf(box);
    var token = tokenAt(box);
    if (!form || !token) {
      closeMenu();
      return;
    }
    if (menu && menu.box === box) showMenu(box, token, menu.all);  // narrow what is shown until the answer comes
    var mine = ++asked;
    var url = form.getAttribute("data-canned-url") + "?q=" + encodeURIComponent(token.query);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : { results: [] }; })
      .then(function (data) {
        if (mine !== asked || document.activeElement !== box) return;
        var now = tokenAt(box);
        if (!now || now.query !== token.query) return;
        showMenu(box, now, data.results || []);
      })
      .catch(function () { closeMenu(); });
  }

  document.addEventListener("input", function (evt) {
    if (inserting || evt.target.tagName !== "TEXTAREA" || !composerOf(evt.target)) return;
    lookUp(evt.target);
  });

  // Capture: the open list takes its keys before anything else on the page (keyboard shortcuts, sending).
  document.addEventListener("keydown", function (evt) {
    if (!menu || evt.target !== menu.box) return;
    if (evt.ctrlKey || evt.metaKey || evt.altKey) return;
    var handled = true;
    if (evt.key === "ArrowDown") highlight(menu.active + 1);
    else if (evt.key === "ArrowUp") highlight(menu.active - 1);
    else if (evt.key === "Enter" || (evt.key === "Tab" && !evt.shiftKey)) choose(menu.active);
    else if (evt.key === "Escape") closeMenu();
    else handled = false;
    if (handled) {
      evt.preventDefault();
      evt.stopPropagation();
    }
  }, true);

  document.addEventListener("focusout", function (evt) {
    if (menu && evt.target === menu.box) closeMenu();
  });
  document.addEventListener("htmx:beforeSwap", function () { closeMenu(); });

  // -- reply or private note ----------------------------------------------------------------------------------

  function setMode(form, mode) {
    var note = mode === "note";
    var url = form.getAttribute(note ? "data-note-url" : "data-reply-url");
    form.setAttribute("hx-post", url);
    form.setAttribute("action", url);
    form.setAttribute("data-mode", note ? "note" : "reply");
    form.classList.toggle("composer-note", note);
    form.classList.toggle("composer-reply", !note);
    form.querySelectorAll("[data-mode-switch]").forEach(function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-mode-switch") === mode ? "true" : "false");
    });
    var hint = form.querySelector(".note-hint");
    if (hint) hint.textContent = note ? "Private note · only agents see this" : "";
    var box = form.querySelector("textarea[name=body]");
    if (box) {
      box.setAttribute("aria-label", note ? "Private note" : "Reply");
      box.setAttribute("placeholder", box.getAttribute(note ? "data-note-placeholder" : "data-reply-placeholder"));
      box.focus();
    }
    var send = form.querySelector("button.send");
    if (send) send.textContent = send.getAttribute(note ? "data-note-label" : "data-reply-label");
    if (window.htmx) window.htmx.process(form);  // htmx reads hx-post when it sets a form up: set it up again
  }

  document.addEventListener("click", function (evt) {
    var target = evt.target;
    if (!target.closest) return;
    var modeButton = target.closest("[data-mode-switch]");
    if (modeButton && composerOf(modeButton)) {
      setMode(composerOf(modeButton), modeButton.getAttribute("data-mode-switch"));
      return;
    }
    var emoji = target.closest("[data-emoji]");
    if (emoji && composerOf(emoji)) {
      var box = composerOf(emoji).querySelector("textarea[name=body]");
      if (box) replaceRange(box, box.selectionStart, box.selectionEnd, emoji.getAttribute("data-emoji"));
      var picker = emoji.closest("details");
      if (picker) picker.open = false;
    }
  });

  // -- the action bar across live refreshes -------------------------------------------------------------------
  // The pane's header is fetched again whenever its conversation changes (another agent acted, or the echo of
  // our own action). Keep what the agent is doing in the bar meanwhile: the open menu (transfer, snooze), what
  // they typed or chose there, and the focus. The form whose action went through starts afresh; after a refusal
  // it keeps its input, so the agent can fix it.

  var kept = [];

  function dirty(field) {
    if (field.type === "hidden" || field.type === "submit" || !field.id) return false;
    if (field.tagName === "SELECT") {
      return Array.prototype.some.call(field.options, function (o) { return o.selected !== o.defaultSelected; });
    }
    return field.value !== field.defaultValue;
  }

  // What the agent is doing in `bar`, except in `done` (the form whose action just went through: it starts afresh).
  function snapshot(bar, done) {
    var skip = function (node) {
      if (!done || !node.id) return false;
      return Array.prototype.some.call(done.elements || [], function (f) { return f.id === node.id; });
    };
    var doneMenu = done && done.closest ? done.closest("details") : null;
    var state = { conversation: bar.getAttribute("data-conversation"), old: bar, open: [], values: {}, focus: null };
    bar.querySelectorAll("details[open]").forEach(function (d) {
      if (!doneMenu || d.className !== doneMenu.className) state.open.push(d.className);
    });
    bar.querySelectorAll("input, textarea, select").forEach(function (field) {
      if (dirty(field) && !skip(field)) state.values[field.id] = field.value;
    });
    var active = document.activeElement;
    if (active && active.id && bar.contains(active) && !skip(active)) {
      state.focus = { id: active.id, start: active.selectionStart, end: active.selectionEnd };
    }
    return state;
  }

  function restore(state) {
    var bars = document.querySelectorAll(".actions[data-conversation='" + state.conversation + "']");
    bars.forEach(function (bar) {
      if (bar === state.old) return;
      state.open.forEach(function (name) {
        var d = bar.querySelector("details[class='" + name + "']");
        if (d) d.open = true;
      });
      Object.keys(state.values).forEach(function (id) {
        var field = bar.querySelector("#" + CSS.escape(id));
        if (field) field.value = state.values[id];
      });
      if (state.focus) {
        var field = bar.querySelector("#" + CSS.escape(state.focus.id));
        if (field) {
          field.focus();
          if (typeof state.focus.start === "number" && field.setSelectionRange) {
            try { field.setSelectionRange(state.focus.start, state.focus.end); } catch (e) { /* not a text field */ }
          }
        }
      }
    });
  }

  function currentBar(conversation) {
    return document.querySelector(".actions[data-conversation='" + conversation + "']");
  }

  function version(bar) {
    return parseInt(bar.getAttribute("data-version"), 10) || 0;
  }

  // The version of this bar in an answer (Infinity: the answer has no such bar, nothing to compare).
  function incomingVersion(evt, bar) {
    var html = typeof evt.detail.serverResponse === "string" ? evt.detail.serverResponse : "";
    var pattern = new RegExp("data-conversation=\"" + bar.getAttribute("data-conversation") + "\" data-version=\"(\\d+)\"");
    var found = pattern.exec(html);
    return found ? parseInt(found[1], 10) : Infinity;
  }

  function flushKept() {
    var states = kept;
    kept = [];
    states.forEach(restore);
  }

  function beforeSwap(evt) {
    var target = evt.detail.target;
    if (!target || !target.querySelectorAll) return;
    // A header refresh replaced the bar while one of its forms was waiting for its answer: the answer (newer than
    // that refresh: it comes after the commit) goes over the bar now on the page, not the one that is gone.
    if (target.matches(".actions") && !document.body.contains(target)) {
      var current = currentBar(target.getAttribute("data-conversation"));
      if (!current) return;
      evt.detail.target = target = current;
    }
    var bars = target.matches(".actions") ? [target] : Array.prototype.slice.call(target.querySelectorAll(".actions"));
    if (bars.some(function (bar) { return incomingVersion(evt, bar) < version(bar); })) {
      // An answer read before the bar now shown (a refresh that crossed an action): keep the newer one.
      evt.detail.shouldSwap = false;
      return;
    }
    var source = evt.detail.requestConfig && evt.detail.requestConfig.elt;
    var sourceBar = source && source.closest ? source.closest(".actions") : null;
    var succeeded = evt.detail.xhr && evt.detail.xhr.status < 400;
    bars.forEach(function (bar) {
      var own = sourceBar && sourceBar.getAttribute("data-conversation") === bar.getAttribute("data-conversation");
      kept.push(snapshot(bar, own && succeeded ? source.closest("form") : null));
    });
    setTimeout(flushKept, 0);  // htmx swaps right after this event
  }

  document.addEventListener("htmx:beforeSwap", beforeSwap);
  var listening = new WeakSet();
  // htmx fires beforeSwap on the request's target; once that bar is out of the page the event no longer reaches
  // the document, so the bar listens for itself.
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var bar = evt.detail.target;
    if (!bar || !bar.matches || !bar.matches(".actions") || listening.has(bar)) return;
    listening.add(bar);
    bar.addEventListener("htmx:beforeSwap", function (swapEvt) {
      if (!document.body.contains(bar)) beforeSwap(swapEvt);
    });
  });
  document.addEventListener("htmx:afterSwap", flushKept);

  // -- time zones -----------------------------------------------------------------------------------------------

  var zone = "UTC";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch (e) { /* an old browser: the server reads the times as UTC */ }

  function localise(root) {
    if (!root || !root.querySelectorAll) return;
    root.querySelectorAll("input[name=tz]").forEach(function (input) {
      if (!input.value) input.value = zone;
    });
    root.querySelectorAll("time.local[datetime]").forEach(function (t) {
      var when = new Date(t.getAttribute("datetime"));
      if (isNaN(when.getTime())) return;
      t.textContent = when.toLocaleString(undefined, {
        weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit"
      });
      t.title = t.getAttribute("datetime");
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  document.addEventListener("htmx:load", function (evt) { localise(evt.detail.elt); });
  // Capture, before htmx reads the form: a form that came without the zone still sends it.
  document.addEventListener("submit", function (evt) { localise(evt.target); }, true);
})();
