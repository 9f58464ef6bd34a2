// The console on top of htmx (docs/architecture.md, "The console: inbox, panes and live updates"): conversations
// open as tabs whose panes stay in the page; each pane catches up from its own cursors on the live stream's
// signals; drafts, typing and read receipts are per pane. No inline scripts, no framework.
(function () {
  "use strict";

  var TYPING_EVERY = 2000, TYPING_SHOWN = 4000, DRAFT_KEY = "deskbell.draft.";
  var states = new WeakMap();  // per pane: what the page has told the server, timers, a fetch in flight

  function state(pane) {
    if (!states.has(pane)) states.set(pane, { readSent: 0, typingSentAt: 0, busy: false, again: false });
    return states.get(pane);
  }
  function panesBox() { return document.getElementById("panes"); }
  function allPanes() { return Array.prototype.slice.call(document.querySelectorAll("#panes > .pane")); }
  function paneOf(id) { return document.getElementById("pane-" + id); }
  function activePane() { return document.querySelector("#panes > .pane.active"); }
  function fragment(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    return tpl.content;
  }

  // POST a small form with the page's CSRF token (the body's hx-headers, as htmx sends it).
  function post(url, fields) {
    var headers = { "Content-Type": "application/x-www-form-urlencoded" };
    try {
      var extra = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
      for (var k in extra) headers[k] = extra[k];
    } catch (e) { /* no token: the server refuses, and nothing else breaks */ }
    return fetch(url, { method: "POST", headers: headers, body: new URLSearchParams(fields || {}),
                        credentials: "same-origin" }).catch(function () { /* best effort */ });
  }

  // -- The live stream (web/edge/console.py). htmx's SSE extension owns the EventSource and reconnects it;
  // scripts subscribe to its events with deskbell.on(name, fn(data)). A reconnect may bring a new EventSource.
  var handlers = {}, sources = new WeakSet();
  function on(name, fn) { (handlers[name] = handlers[name] || []).push(fn); }
  document.addEventListener("htmx:sseOpen", function (evt) {
    var source = evt.detail && evt.detail.source;
    if (!source || sources.has(source)) return;
    sources.add(source);
    Object.keys(handlers).forEach(function (name) {
      source.addEventListener(name, function (e) {
        handlers[name].forEach(function (fn) { fn(e.data); });
      });
    });
  });

  // The agent's access was taken away (deactivated, signed out everywhere, the company suspended): the stream
  // ends here, so go where the server now sends this browser, the login page, which says why. Drafts are kept.
  on("revoked", function () { location.reload(); });
  // The stream says `resync` once it listens (and after every reconnect): the console is live from then on.
  on("resync", function () { document.querySelector(".console").dataset.live = "open"; });

  // -- Tabs: one per pane, built here from the pane's data-title.
  function tabOf(pane) {
    return document.querySelector('.tabstrip .tab[data-conversation="' + pane.dataset.conversation + '"]');
  }
  function ensureTab(pane) {
    if (tabOf(pane)) return;
    var tab = document.createElement("div"), open = document.createElement("button"),
        close = document.createElement("button");
    tab.className = "tab";
    tab.dataset.conversation = pane.dataset.conversation;
    open.type = close.type = "button";
    open.className = "tab-open";
    open.setAttribute("role", "tab");
    open.setAttribute("aria-controls", pane.id);
    open.textContent = pane.dataset.title;
    close.className = "tab-close";
    close.setAttribute("aria-label", "Close " + pane.dataset.title);
    close.title = "Close (x)";
    close.textContent = "×";
    tab.append(open, close);
    document.querySelector(".tabstrip").append(tab);
  }

  function setupPane(pane) {
    ensureTab(pane);
    restoreDraft(pane);
  }

  // The URL names the active conversation and the list's filter, so a reload or a shared link shows the same.
  function syncUrl() {
    var box = panesBox(), pane = activePane(), list = document.querySelector("#conversation-list .inbox-body");
    if (!box) return;
    var query = list ? list.dataset.query : "";
    var url = (pane ? pane.dataset.url : box.dataset.url) + (query ? "?" + query : "");
    if (url !== location.pathname + location.search) history.replaceState(history.state, "", url);
  }

  function markCurrentRow() {
    var pane = activePane(), id = pane ? pane.dataset.conversation : null;
    document.querySelectorAll("#conversation-list .row").forEach(function (row) {
      var current = row.dataset.conversation === id, link = row.querySelector("a");
      row.classList.toggle("current", current);
      if (current) link.setAttribute("aria-current", "true"); else link.removeAttribute("aria-current");
    });
  }

  function scrollDown(pane) {
    var thread = pane.querySelector(".thread");
    if (thread) thread.scrollTop = thread.scrollHeight;
  }

  // Switching tabs is only this: no request (bar a read receipt for messages that came while it was hidden).
  function activate(pane) {
    allPanes().forEach(function (p) {
      var active = p === pane, tab = tabOf(p);
      p.hidden = !active;
      p.classList.toggle("active", active);
      if (tab) {
        tab.classList.toggle("active", active);
        tab.querySelector(".tab-open").setAttribute("aria-selected", active ? "true" : "false");
      }
    });
    markCurrentRow();
    syncUrl();
    if (!pane) return;
    var s = state(pane);
    if (!s.shown || s.unseen) scrollDown(pane);
    s.shown = true;
    s.unseen = false;
    markRead(pane);
  }

  function closePane(pane) {
    var list = allPanes(), i = list.indexOf(pane), tab = tabOf(pane);
    if (tab) tab.remove();
    pane.remove();
    if (pane.classList.contains("active")) activate(list[i + 1] || list[i - 1] || null);
  }

  // Open a conversation as a tab: fetched once, then kept. `href` is its page (/console/c/<id>).
  var opening = {};
  function open(id, href) {
    var pane = paneOf(id);
    if (pane) { activate(pane); return Promise.resolve(pane); }
    if (!opening[id]) {
      opening[id] = fetch(href + "/pane", { credentials: "same-origin" }).then(function (response) {
        if (response.redirected || !response.ok) { location.href = href; return null; }  // logged out, or gone
        return response.text().then(function (html) {
          var node = fragment(html).firstElementChild;
          if (!node || paneOf(id)) return paneOf(id);
          panesBox().append(node);
          htmx.process(node);
          setupPane(node);
          return node;
        });
      }).then(function (node) {
        delete opening[id];
        if (node) activate(node);
        return node;
      }, function () { delete opening[id]; });
    }
    return opening[id];
  }

  // -- Catching up: a pane asks for the timeline after its cursors and appends what it lacks (by element id).
  function highest(pane, selector, attribute) {
    var max = 0;
    pane.querySelectorAll(".thread " + selector).forEach(function (el) {
      max = Math.max(max, parseInt(el.getAttribute(attribute), 10) || 0);
    });
    return max;
  }
  function nearBottom(thread) { return thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80; }

  function append(pane, html) {
    var thread = pane.querySelector(".thread"), stick = nearBottom(thread), added = [];
    Array.prototype.slice.call(fragment(html).children).forEach(function (node) {
      if (node.id && document.getElementById(node.id)) return;  // came already (a signal and a resync)
      thread.append(node);
      htmx.process(node);
      added.push(node);
    });
    if (!added.length) return;
    if (added.some(function (n) { return n.classList.contains("msg-visitor"); })) hideTyping(pane);
    if (pane.hidden) state(pane).unseen = true;
    else if (stick) scrollDown(pane);
    markRead(pane);
  }

  function refreshTimeline(pane) {
    var s = state(pane);
    if (s.busy) { s.again = true; return; }  // one fetch at a time; one more after it for what came meanwhile
    s.busy = true;
    var url = pane.dataset.timelineUrl + "?after_seq=" + highest(pane, ".msg[data-seq]", "data-seq") +
              "&after_event=" + highest(pane, "[data-event]", "data-event");
    fetch(url, { credentials: "same-origin" })
      .then(function (response) { return response.ok && !response.redirected ? response.text() : ""; })
      .then(function (html) { if (html.trim() && pane.isConnected) append(pane, html); })
      .catch(function () { /* the next signal or resync tries again */ })
      .then(function () {
        s.busy = false;
        if (s.again && pane.isConnected) { s.again = false; refreshTimeline(pane); }
      });
  }

  // The header (status, assignee, actions) is re-fetched, unless the agent is working in it: then on leaving it.
  function refreshHeader(pane) {
    var header = pane.querySelector(".pane-header");
    if (!header) return;
    if (header.contains(document.activeElement)) { state(pane).headerStale = true; return; }
    state(pane).headerStale = false;
    htmx.trigger(header, "refresh");
  }
  document.addEventListener("focusout", function (evt) {
    var header = evt.target.closest && evt.target.closest(".pane-header");
    if (!header || header.contains(evt.relatedTarget)) return;
    var pane = header.closest(".pane");
    if (pane && state(pane).headerStale) setTimeout(function () { refreshHeader(pane); }, 0);
  });

  function refresh(pane) {
    refreshTimeline(pane);
    refreshHeader(pane);
  }

  on("resync", function () { allPanes().forEach(refresh); });  // (re)subscribed: whatever was missed, fetch it
  on("conversation", function (id) {
    var pane = paneOf(id);
    if (pane) refresh(pane);
  });

  // -- "Visitor is typing…": shown in the visitor's pane, hidden 4 s after the last signal or on their message.
  function hideTyping(pane) {
    clearTimeout(state(pane).typingTimer);
    var note = pane.querySelector(".typing");
    if (note) note.hidden = true;
  }
  on("typing", function (data) {
    var typing = JSON.parse(data);
    allPanes().forEach(function (pane) {
      if (pane.dataset.visitor !== typing.visitor_id) return;
      var note = pane.querySelector(".typing");
      if (note) note.hidden = false;
      clearTimeout(state(pane).typingTimer);
      state(pane).typingTimer = setTimeout(function () { hideTyping(pane); }, TYPING_SHOWN);
    });
  });

  // -- Read receipts: only the active pane of a visible page has been read; tell the server when that grows.
  function markRead(pane) {
    if (!pane || !pane.classList.contains("active") || document.visibilityState !== "visible") return;
    var newest = highest(pane, ".msg[data-seq]", "data-seq"), s = state(pane);
    if (newest <= s.readSent) return;
    s.readSent = newest;
    post(pane.dataset.readUrl, { seq: String(newest) });
  }
  document.addEventListener("visibilitychange", function () { markRead(activePane()); });

  // -- Drafts: per pane, and in localStorage by conversation, so a reload or a closed tab keeps them.
  function draftKey(pane) { return DRAFT_KEY + pane.dataset.conversation; }
  function saveDraft(pane, text) {
    try {
      if (text) localStorage.setItem(draftKey(pane), text); else localStorage.removeItem(draftKey(pane));
    } catch (e) { /* storage off or full: the draft lives in the pane only */ }
  }
  function restoreDraft(pane) {
    var box = pane.querySelector(".composer textarea[name=body]"), saved = null;
    try { saved = localStorage.getItem(draftKey(pane)); } catch (e) { /* storage off */ }
    if (box && saved && !box.value) box.value = saved;
  }

  document.addEventListener("input", function (evt) {
    var box = evt.target;
    if (!box.matches || !box.matches(".pane .composer textarea[name=body]")) return;
    var pane = box.closest(".pane"), form = box.closest("form"), s = state(pane), now = Date.now();
    saveDraft(pane, box.value);
    // Typing: tell the visitor at most every 2 s; never while writing a private note.
    if (form.dataset.mode === "note" || !box.value || now - s.typingSentAt < TYPING_EVERY) return;
    s.typingSentAt = now;
    post(pane.dataset.typingUrl);
  });

  // A composer answers with a fresh one: empty when sent (the draft is done), the draft and an error if not.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var form = evt.detail.elt, pane = form && form.closest && form.closest(".pane");
    if (!pane || !form.classList.contains("composer")) return;
    var status = evt.detail.xhr.status;
    if (status >= 200 && status < 300) {
      saveDraft(pane, "");
      state(pane).typingSentAt = 0;  // the next keystroke starts a new reply: say so at once
    }
  });
  // htmx fires these on what was swapped in: the list's box, the new rows, the new composer. The rows are
  // marked after settling: htmx puts back the server's attributes on elements with a known id then.
  document.addEventListener("htmx:afterSettle", function (evt) {
    if (evt.target.closest && evt.target.closest("#conversation-list")) {
      markCurrentRow();
      syncUrl();
    }
  });
  document.addEventListener("htmx:afterSwap", function (evt) {
    var swapped = evt.target;
    if (!swapped.closest) return;
    if (swapped.classList.contains("composer") && swapped.closest(".pane.active")) {
      var box = swapped.querySelector("textarea[name=body]");
      if (box) box.focus();
    }
  });

  // Ctrl/Cmd+Enter sends.
  document.addEventListener("keydown", function (evt) {
    if (evt.key === "Enter" && (evt.ctrlKey || evt.metaKey) && evt.target.closest && evt.target.closest(".composer")) {
      evt.preventDefault();
      htmx.trigger(evt.target.closest("form"), "submit");
    }
  });

  // Show a message a link named (#msg-…, from search), or else the newest.
  function reveal(pane, hash) {
    var target = null;
    try { target = hash && pane.querySelector(hash); } catch (e) { /* not a selector */ }
    if (!target) return;
    target.scrollIntoView({ block: "center" });
    target.classList.add("found");
  }

  // Choosing a list (Mine, Unassigned, All) shows it chosen at once and records it where live refreshes read it,
  // before htmx sends the request: the click replaces a refresh under way (hx-sync), and a refresh that starts
  // meanwhile asks for the chosen list instead of swapping the old one back and dropping the click with it.
  document.addEventListener("click", function (evt) {
    var view = evt.target.closest && evt.target.closest("#conversation-list .view[data-view]");
    if (!view || evt.button !== 0 || evt.ctrlKey || evt.metaKey || evt.shiftKey || evt.altKey) return;
    var field = document.querySelector("#conversation-list .status-filter input[name=view]");
    if (field) field.value = view.dataset.view;
    document.querySelectorAll("#conversation-list .view[data-view]").forEach(function (other) {
      other.setAttribute("aria-selected", other === view ? "true" : "false");
    });
  }, true);

  // Links to a conversation (the list's rows, search results, earlier conversations) open it as a tab; a
  // Ctrl/middle click or a link to another window still opens the page.
  var CONVERSATION_PAGE = /^\/console\/c\/[0-9a-f-]{36}$/;
  document.addEventListener("click", function (evt) {
    if (!evt.target.closest || !panesBox()) return;
    var link = evt.target.closest("a[href]");
    if (link && evt.button === 0 && !(evt.ctrlKey || evt.metaKey || evt.shiftKey || evt.altKey) &&
        !link.target && link.origin === location.origin && CONVERSATION_PAGE.test(link.pathname)) {
      evt.preventDefault();
      open(link.pathname.split("/").pop(), link.pathname).then(function (pane) {
        if (pane) reveal(pane, link.hash);
      });
      return;
    }
    var tab = evt.target.closest(".tabstrip .tab"), pane = tab && paneOf(tab.dataset.conversation);
    if (!pane) return;
    if (evt.target.closest(".tab-close")) closePane(pane); else activate(pane);
  });

  // "waiting 3m": kept current between refreshes (the same units as web/agent/inbox.py's `waited`).
  function waited(iso) {
    var seconds = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
    var units = [["d", 86400], ["h", 3600], ["m", 60]];
    for (var i = 0; i < units.length; i++) {
      if (seconds >= units[i][1]) return Math.floor(seconds / units[i][1]) + units[i][0];
    }
    return seconds + "s";
  }
  setInterval(function () {
    document.querySelectorAll("[data-since]").forEach(function (el) { el.textContent = waited(el.dataset.since); });
  }, 30000);

  document.addEventListener("DOMContentLoaded", function () {
    if (!panesBox()) return;
    var panes = allPanes();
    panes.forEach(setupPane);
    activate(panes.length ? panes[panes.length - 1] : null);
    if (panes.length) reveal(panes[panes.length - 1], location.hash);
  });

  window.deskbell = { on: on, open: open, activate: activate, closePane: closePane, activePane: activePane };
})();
