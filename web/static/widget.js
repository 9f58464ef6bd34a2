// Deskbell visitor widget (protocol v1, docs/protocol.md; embedding and the JS API, docs/widget.md). Embed:
//   <script src="https://HOST/widget.js" data-site="SITE_KEY" async></script>
// The UI lives in a shadow root so the host page's CSS cannot reach it, and is built with DOM calls only (no
// innerHTML, no inline styles), so a strict Content-Security-Policy or Trusted Types on the host does not break
// it. Message text is only ever set with textContent. Every message gets its client_id before it is sent and
// stays in a localStorage outbox until the server's ack, so a reload or a dropped connection re-sends it and the
// server stores it once.
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-site]");
  var stub = window.Deskbell;
  if (!script || (stub && stub.version)) return;
  var siteKey = script.getAttribute("data-site");
  var origin = new URL(script.src, location.href).origin;
  var store = "deskbell:" + siteKey + ":";
  var lang = navigator.language || "en";
  var zh = /^zh/i.test(lang);
  var T = zh ? {
    open: "打开聊天", close: "关闭聊天", title: "在线客服", welcome: "您好！有什么可以帮您？", message: "消息",
    placeholder: "输入消息…", send: "发送", you: "您", agent: "客服", sending: "发送中…", queued: "尚未送达",
    sent: "已发送", failed: "未送达：", offline: "网络已断开，恢复后会自动发送您的消息。", unread: " 条未读",
    with: "客服：", chat: "聊天", typing: " 正在输入…", read: "已读", online: "在线 — 我们会在几分钟内回复",
    away: "离开 — 请给我们留言", email: "您的邮箱，方便我们回复", emoji: "表情", attach: "附件",
    uploading: "正在上传…", tooLarge: "文件太大（最大 N MB）", badType: "不允许此文件类型", upFailed: "上传失败",
    busy: "当前访问繁忙，稍后自动重连…", inLine: "您排在第 N 位", about: "，大约 M 分钟"
  } : {
    open: "Open chat", close: "Close chat", title: "Chat with us", welcome: "Hi! How can we help?", message: "Message",
    placeholder: "Type a message…", send: "Send", you: "You", agent: "Agent", sending: "Sending…",
    queued: "Not delivered yet", sent: "Sent", failed: "Not delivered: ",
    offline: "You are offline. Your messages will be sent when the connection is back.", unread: " unread",
    with: "Chatting with ", chat: "Chat", typing: " is typing…", read: "Read",
    online: "Online — we reply in a few minutes", away: "Away — leave us a message",
    email: "Your email, so we can reply", emoji: "Emoji", attach: "Attach a file", uploading: "Uploading…",
    tooLarge: "File too large (max N MB)", badType: "This file type is not allowed", upFailed: "Upload failed",
    busy: "Lots of traffic right now, reconnecting shortly…", inLine: "You are number N in line",
    about: " — about M min"
  };
  var COLOR = "#2956d6", EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
  var EMOJI = "😀 😂 😊 😍 🤔 😅 😢 😮 😡 👍 👎 👏 🙏 👋 🙌 💪 ❤️ 🎉 🔥 ✨ ✅ ❌ ⭐ ☕".split(" ");

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
  // read: the highest seq the visitor has seen with the panel open, kept across pages for the unread badge.
  var state = { token: load("token", null), shownSeq: 0, outbox: load("outbox", []), maxBytes: 10485760,
                ws: null, open: false, retry: 0, seen: {}, mode: "ws", wsFailures: 0, visitorId: null,
                recovering: false, unread: 0, read: load("read", null), identity: null, attributes: {},
                started: false, stale: false, timer: null, agentRead: 0, email: load("email", null) };

  // -- events and the JS API -------------------------------------------------------------------------------
  var handlers = {}, fired = {};
  function emit(name, data) {
    if (name === "ready") fired.ready = data;
    (handlers[name] || []).forEach(function (fn) {
      try { fn(data); } catch (e) { setTimeout(function () { throw e; }); }  // the host's bug, not ours
    });
  }

  // -- UI --------------------------------------------------------------------------------------------------
  function h(tag, cls, attrs, kids) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    (kids || []).forEach(function (kid) { node.appendChild(typeof kid === "string" ? document.createTextNode(kid) : kid); });
    return node;
  }
  function svg(d) {
    var ns = "http://www.w3.org/2000/svg", icon = document.createElementNS(ns, "svg"), path = document.createElementNS(ns, "path");
    icon.setAttribute("viewBox", "0 0 24 24"); icon.setAttribute("aria-hidden", "true");
    path.setAttribute("fill", "currentColor"); path.setAttribute("d", d);
    icon.appendChild(path);
    return icon;
  }

  var css =
    ":host{all:initial}*{box-sizing:border-box;font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0}" +
    ".launch{position:relative;width:56px;height:56px;border-radius:50%;border:0;background:#2956d6;color:#fff;cursor:pointer;box-shadow:0 4px 12px #0003;display:flex;align-items:center;justify-content:center}" +
    ".launch svg{width:26px;height:26px}.launch:focus-visible,button:focus-visible,a:focus-visible{outline:3px solid #f5b700;outline-offset:2px}" +
    ".badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 5px;border-radius:10px;background:#d92d20;color:#fff;font-size:12px;font-weight:700;line-height:20px;text-align:center}" +
    "[hidden]{display:none!important}" +
    ".panel{display:none;position:absolute;right:0;bottom:68px;width:360px;height:520px;max-height:calc(100vh - 100px);background:#fff;color:#101828;border-radius:12px;box-shadow:0 8px 30px #0003;flex-direction:column;overflow:hidden}" +
    ".panel.open{display:flex}.head{background:#2956d6;color:#fff;padding:12px 8px 12px 16px;display:flex;align-items:center;gap:8px}" +
    ".head div{flex:1;min-width:0}.title{display:block;font-weight:600;font-size:15px}.sub,.avail{display:block;font-size:12px;opacity:.85}" +
    ".x{border:0;background:none;color:#fff;width:36px;height:36px;border-radius:50%;cursor:pointer;display:flex;align-items:center;justify-content:center}" +
    ".x svg{width:20px;height:20px}.x:hover{background:#fff2}" +
    ".note{background:#fef0c7;color:#7a2e0e;padding:6px 12px;font-size:12px}" +
    ".list{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f5f6f8}" +
    ".m{max-width:80%;padding:7px 10px;border-radius:12px;background:#fff;box-shadow:0 1px 1px #0001;white-space:pre-wrap;overflow-wrap:anywhere}" +
    ".m.visitor{align-self:flex-end;background:#dfe8ff}.m.grouped{margin-top:-5px}.m.grouped .who{display:none}.m.pending{opacity:.7}.m.welcome{align-self:flex-start}" +
    ".m small{display:block;color:#667085;font-size:11px}.m .meta{text-align:right;margin-top:2px}.m a{color:#1d4ed8;text-decoration:underline}" +
    ".m[data-state=failed]{outline:1px solid #b42318}.m[data-state=failed] .st{color:#b42318}" +
    ".m.system{align-self:center;background:none;box-shadow:none;color:#667085;font-size:12px;text-align:center}.m.system .who{display:none}" +
    ".queue{background:#eef4ff;color:#1d3a8a;padding:6px 12px;font-size:13px}" +
    ".typing{padding:2px 12px;font-size:12px;font-style:italic;color:#667085;background:#f5f6f8}" +
    "form{display:flex;align-items:flex-end;border-top:1px solid #e4e7ec;background:#fff}" +
    "textarea{flex:1;border:0;padding:12px;resize:none;outline:none;background:none;color:inherit;max-height:120px}" +
    "form button{border:0;background:none;color:#2956d6;font-weight:600;padding:12px 16px;cursor:pointer}form .emo{padding:12px 4px 12px 10px;font-size:18px}" +
    ".email{border:0;border-top:1px solid #e4e7ec;padding:10px 12px;outline:none;color:inherit;background:#fff}.email[aria-invalid=true]{background:#fef3f2}" +
    ".up{padding:4px 12px;font-size:12px;color:#b42318;background:#fff}.up.busy{color:#667085}" +
    ".grid{display:grid;grid-template-columns:repeat(8,1fr);padding:4px;border-top:1px solid #e4e7ec;background:#fff}" +
    ".grid button{border:0;background:none;font-size:20px;padding:4px;border-radius:6px;cursor:pointer}.grid button:hover{background:#f2f4f7}" +
    ".panel.left{right:auto;left:0}" +
    "@media (max-width:480px){.panel,.panel.left{position:fixed;inset:0;width:auto;height:auto;max-height:none;border-radius:0}" +
    ".panel.open+.launch{display:none}}";

  var host = document.createElement("deskbell-widget");
  // Inline and !important, so no host rule (`* { all: unset }`, `div { display: none !important }`) can hide it.
  host.style.cssText = "all:initial!important;position:fixed!important;z-index:2147483000!important;" +
                       "right:20px!important;bottom:20px!important;display:block!important;";
  var root = host.attachShadow({ mode: "open" });
  var sheet = null, styleNode = null;
  if (root.adoptedStyleSheets && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
    sheet = new CSSStyleSheet(); sheet.replaceSync(css); root.adoptedStyleSheets = [sheet];  // not subject to style-src
  } else {
    styleNode = root.appendChild(h("style", "", {}, [css]));
  }
  // The site's colour (a #rrggbb, checked again here) replaces the default one in the same stylesheet.
  function setColor(color) {
    var text = css.split(COLOR).join(/^#[0-9a-f]{6}$/i.test(color) ? color : COLOR);
    if (sheet) sheet.replaceSync(text); else styleNode.textContent = text;
  }
  var title = h("b", "title", {}, [T.title]), sub = h("span", "sub", { hidden: "" });
  var status = h("span", "avail", { hidden: "" });
  var closeButton = h("button", "x", { type: "button", "aria-label": T.close }, [svg("M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12 19 17.6 17.6 19 12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z")]);
  var note = h("div", "note", { role: "status", hidden: "" }, [T.offline]);
  // The visitor's place in line while every agent is busy (docs/protocol.md, the `queue` frame).
  var queueNote = h("div", "queue", { role: "status", "aria-live": "polite", hidden: "" });
  var list = h("div", "list", { role: "log", "aria-live": "polite", tabindex: "0", "aria-label": T.chat });
  var typingNote = h("div", "typing", { "aria-live": "polite", hidden: "" });
  var box = h("textarea", "", { rows: "2", "aria-label": T.message, placeholder: T.placeholder });
  var emojiButton = h("button", "emo", { type: "button", "aria-label": T.emoji, "aria-expanded": "false", "aria-controls": "deskbell-emoji" }, ["😊"]);
  var grid = h("div", "grid", { id: "deskbell-emoji", role: "group", "aria-label": T.emoji, hidden: "" },
               EMOJI.map(function (e) { return h("button", "", { type: "button" }, [e]); }));
  var emailBox = h("input", "email", { type: "email", autocomplete: "email", maxlength: "320", "aria-label": T.email, placeholder: T.email, hidden: "" });
  // Attachments: the server checks the type by content; this list only narrows the file picker.
  var fileInput = h("input", "", { type: "file", hidden: "", accept: "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain,.txt" });
  var clip = h("button", "emo", { type: "button", "aria-label": T.attach }, ["📎"]);
  var upNote = h("div", "up", { "aria-live": "polite", hidden: "" });
  var form = h("form", "", {}, [emojiButton, clip, box, h("button", "", { type: "submit" }, [T.send])]);
  var panel = h("div", "panel", { role: "dialog", "aria-label": T.title, id: "deskbell-panel" },
                [h("div", "head", {}, [h("div", "", {}, [title, status, sub]), closeButton]), note, queueNote, list, typingNote, grid, emailBox, upNote, fileInput, form]);
  var badge = h("span", "badge", { "aria-hidden": "true", hidden: "" });
  var launcher = h("button", "launch", { type: "button", "aria-controls": "deskbell-panel", "aria-expanded": "false" },
                   [svg("M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"), badge]);
  root.appendChild(panel);
  root.appendChild(launcher);

  var welcome = h("div", "m welcome", {}, [T.welcome]);
  function clearList() {
    list.textContent = "";
    list.appendChild(welcome);
  }
  clearList();

  function clock(iso) {
    var at = iso ? new Date(iso) : new Date();
    try { return at.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" }); }
    catch (e) { return at.toTimeString().slice(0, 5); }
  }

  // Links: <a> built from text, and only for http(s) URLs; everything else stays text.
  function linkify(parent, text) {
    var re = /https?:\/\/[^\s<>"']+/gi, last = 0, m;
    while ((m = re.exec(text))) {
      var url = m[0].replace(/[.,;:!?)\]]+$/, ""), end = m.index + url.length, a = null;
      // The visitor's own attachments are served to them by their token.
      var href = url.indexOf(origin + "/attachments/") === 0 && state.token ? url + "?token=" + encodeURIComponent(state.token) : url;
      try { if (/^https?:$/.test(new URL(url).protocol)) a = h("a", "", { href: href, target: "_blank", rel: "noopener noreferrer nofollow" }, [url]); }
      catch (e) { /* not a URL after all */ }
      if (!a) continue;
      parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      parent.appendChild(a);
      last = re.lastIndex = end;
    }
    parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function setState(node, name, text) {
    node.classList.toggle("pending", name === "sending");
    node.setAttribute("data-state", name);
    var st = node.querySelector(".st");
    if (st) st.textContent = text;
  }
  // Read receipts: the visitor's own messages with a seq up to the agents' read position show "Read".
  function showRead(node) {
    var seq = +node.getAttribute("data-seq");
    if (seq && seq <= state.agentRead && node.getAttribute("data-state") === "sent") setState(node, "read", T.read);
  }
  function setAgentRead(seq) {
    if (!(seq > state.agentRead)) return;
    state.agentRead = seq;
    list.querySelectorAll(".m.visitor[data-seq]").forEach(showRead);
  }

  // "You are number 3 in line — about 4 min"; position 0: an agent has the conversation, so the line is gone.
  function showQueue(position, waitSeconds) {
    if (!(position > 0)) { queueNote.hidden = true; return; }
    var text = T.inLine.replace("N", position);
    if (waitSeconds > 0) text += T.about.replace("M", Math.max(1, Math.round(waitSeconds / 60)));
    queueNote.textContent = text;
    queueNote.hidden = false;
  }

  // Typing, both ways: the visitor's at most every 2 s while typing; an agent's shown for 4 s after the last.
  var typingSentAt = 0, typingTimer = null;
  function hideTyping() { clearTimeout(typingTimer); typingNote.hidden = true; }
  box.addEventListener("input", function () {
    var now = Date.now();
    if (!state.ready || !box.value || now - typingSentAt < 2000) return;
    typingSentAt = now;
    send({ type: "typing" });
  });

  // Emoji: a grid of buttons under the message list; arrows move between them, Escape closes it.
  var emojis = [].slice.call(grid.children);
  function showEmoji(show) {
    grid.hidden = !show;
    emojiButton.setAttribute("aria-expanded", String(show));
    if (show) emojis[0].focus();
  }
  emojiButton.addEventListener("click", function () { showEmoji(grid.hidden); });
  grid.addEventListener("click", function (e) {
    var i = emojis.indexOf(e.target);
    if (i < 0) return;
    box.setRangeText(emojis[i].textContent, box.selectionStart, box.selectionEnd, "end");
    showEmoji(false);
    box.focus();
    box.dispatchEvent(new Event("input"));
  });
  grid.addEventListener("keydown", function (e) {
    var step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 8, ArrowUp: -8 }[e.key], i = emojis.indexOf(root.activeElement);
    if (step && i >= 0) { e.preventDefault(); emojis[(i + step + emojis.length) % emojis.length].focus(); }
    if (e.key === "Escape") { e.stopPropagation(); showEmoji(false); emojiButton.focus(); }
  });

  function pendingText() { return state.ready ? T.sending : T.queued; }
  function refreshPending() {
    state.outbox.forEach(function (m) {
      var node = state.seen["c:" + m.client_id];
      if (node && node.getAttribute("data-state") === "sending") setState(node, "sending", pendingText());
    });
  }

  // Messages stand in seq order, the thread's order (docs/architecture.md, "Order"): a stored one goes before the
  // first message with a higher seq or still waiting for its ack; one still waiting goes at the end.
  function place(node, seq) {
    var before = null, oldNext = node.parentNode ? node.nextElementSibling : null;
    if (seq) {
      for (var k = welcome.nextElementSibling; k; k = k.nextElementSibling) {
        if (k === node) continue;
        var s = +k.getAttribute("data-seq");
        if (s ? s > seq : k.classList.contains("visitor")) { before = k; break; }
      }
    }
    if (before !== node.nextElementSibling || !node.parentNode) list.insertBefore(node, before);
    [oldNext, node, node.nextElementSibling].forEach(regroup);
  }
  // The same sender again within 2 minutes: the name is shown once, on the first of the group.
  function regroup(n) {
    if (!n || !n.getAttribute("data-who")) return;
    var p = n.previousElementSibling;
    n.classList.toggle("grouped", !!(p && p.getAttribute("data-who") === n.getAttribute("data-who") &&
                                     Math.abs(n.getAttribute("data-at") - p.getAttribute("data-at")) < 120000));
  }

  function render(frame, pending) {
    var key = frame.client_id ? "c:" + frame.client_id : "s:" + frame.seq;
    var node = state.seen[key], mine = frame.sender === "visitor";
    if (!node) {
      var body = h("div", "b");
      linkify(body, frame.body);
      var meta = h("small", "meta", {}, [h("time", "", {}, [clock(frame.created_at || frame.at)])]);
      if (mine) { meta.appendChild(document.createTextNode(" · ")); meta.appendChild(h("span", "st")); }
      var who = mine ? T.you : (frame.author || T.agent), at = Date.parse(frame.created_at || frame.at) || Date.now();
      node = h("div", "m " + frame.sender, { "data-who": frame.sender + ":" + who, "data-at": at }, [h("small", "who", {}, [who]), body, meta]);
      state.seen[key] = node;
      if (!frame.seq) place(node, 0);  // with a seq: placed below
    }
    if (frame.created_at) {
      var time = node.querySelector("time");
      time.setAttribute("datetime", frame.created_at);
      time.textContent = clock(frame.created_at);
    }
    if (frame.seq && (+node.getAttribute("data-seq") !== frame.seq || !node.parentNode)) {
      node.setAttribute("data-seq", frame.seq);
      place(node, frame.seq);
    }
    if (pending) setState(node, "sending", pendingText());
    else if (!/failed|read/.test(node.getAttribute("data-state"))) setState(node, "sent", T.sent);
    if (mine) showRead(node);
    list.scrollTop = list.scrollHeight;
  }

  function setUnread(count) {
    if (count === state.unread) return;
    state.unread = count;
    badge.textContent = count > 99 ? "99+" : String(count);
    badge.hidden = !count;
    labelLauncher();
    emit("unread", count);
  }
  function labelLauncher() {
    launcher.setAttribute("aria-label", state.open ? T.close : T.open + (state.unread ? ", " + state.unread + T.unread : ""));
    launcher.setAttribute("aria-expanded", String(state.open));
  }
  function markRead() {
    setUnread(0);
    if (state.visitorId && state.shownSeq > readSeq()) { state.read = { v: state.visitorId, seq: state.shownSeq }; save("read", state.read); }
  }
  function readSeq() { return state.read && state.read.v === state.visitorId ? state.read.seq : 0; }

  function toggle(open) {
    var wasFocused = !!root.activeElement;
    state.open = typeof open === "boolean" ? open : !state.open;
    panel.classList.toggle("open", state.open);
    if (state.open) hideInvitation();  // never over an open chat (proactive invitations, below)
    labelLauncher();
    if (state.open) { markRead(); focusTarget().focus(); list.scrollTop = list.scrollHeight; }
    else if (wasFocused) launcher.focus();
  }
  launcher.addEventListener("click", function () { toggle(); });
  closeButton.addEventListener("click", function () { toggle(false); });
  root.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && state.open) { e.stopPropagation(); toggle(false); launcher.focus(); }
  });
  box.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var body = box.value, email = emailBox.hidden ? "" : emailBox.value.trim();
    if (!body.trim()) return;
    if (email && !EMAIL.test(email)) { emailBox.setAttribute("aria-invalid", "true"); emailBox.focus(); return; }
    if (email) { state.email = email; save("email", email); save("gaveEmail", true); emailBox.hidden = true; sendEmail(); }
    box.value = "";
    typingSentAt = 0;  // the next keystroke starts a new message: say so at once
    queue(body);
  });
  function queue(body) {
    invitationAnswered();  // the invitation that brought the visitor, if any (below)
    var msg = { client_id: newId(), body: body, at: new Date().toISOString() };
    updateOutbox(function (queued) { return queued.concat([msg]); });
    render({ client_id: msg.client_id, sender: "visitor", body: body, at: msg.at }, true);
    // Behind anything still waiting to be re-sent, so the server stores them in the order they were typed.
    flushOutbox();
  }

  // An attachment is uploaded over HTTP, then its URL goes out as a normal message (docs/protocol.md).
  function showUpload(text, busy) {
    upNote.textContent = text || "";
    upNote.hidden = !text;
    upNote.classList.toggle("busy", !!busy);
  }
  function upload(file) {
    var tooLarge = T.tooLarge.replace("N", Math.round(state.maxBytes / 1048576));
    if (file.size > state.maxBytes) return showUpload(tooLarge);
    showUpload(T.uploading, true);
    var data = new FormData();
    data.append("file", file);
    fetch(origin + "/api/v1/widget/attachments?token=" + encodeURIComponent(state.token || ""), { method: "POST", body: data })
      .then(function (r) { return r.json().then(function (j) { if (!r.ok) throw r.status; return j; }); })
      .then(function (j) { showUpload(""); queue("📎 " + j.filename + " " + j.url); })
      .catch(function (s) { showUpload(s === 413 ? tooLarge : s === 415 ? T.badType : T.upFailed); });
  }
  clip.addEventListener("click", function () { fileInput.click(); });
  fileInput.addEventListener("change", function () {
    var file = fileInput.files[0];
    fileInput.value = "";
    if (file) upload(file);
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
      note.hidden = true;
      note.textContent = T.offline;
      setAgentRead(frame.read_seq);
      if (frame.heartbeat_seconds && state.ws) { state.ws.beat = frame.heartbeat_seconds * 1000; heartbeat(); }
      refreshPending();
      flushOutbox();
      if (!fired.ready) {
        emit("ready", { visitor_id: state.visitorId, identified: state.identified });
        window.dispatchEvent(new CustomEvent("deskbell:ready"));
      }
    } else if (frame.type === "message") {
      render(frame, false);
      state.shownSeq = Math.max(state.shownSeq, frame.seq);
      if (frame.sender === "agent" && frame.author) { sub.textContent = T.with + frame.author; sub.hidden = false; }
      if (frame.sender !== "visitor") hideTyping();
      if (frame.sender === "agent") showQueue(0);
      if (state.open) markRead();
      else if (frame.sender !== "visitor" && frame.seq > readSeq()) setUnread(state.unread + 1);
      emit("message", frame);
    } else if (frame.type === "ack") {
      delete inflight[frame.client_id];
      dropFromOutbox(frame.client_id);
      var node = state.seen["c:" + frame.client_id];
      if (node) {
        node.setAttribute("data-seq", frame.seq);
        place(node, frame.seq);  // a reply stored after it may have arrived first
        if (node.getAttribute("data-state") !== "read") setState(node, "sent", T.sent);
        showRead(node);
      }
      if (state.recovering) { state.recovering = false; flushOutbox(); }
    } else if (frame.type === "typing") {
      typingNote.textContent = (frame.author || T.agent) + T.typing;
      typingNote.hidden = false;
      clearTimeout(typingTimer);
      typingTimer = setTimeout(hideTyping, 4000);
    } else if (frame.type === "read") {
      setAgentRead(frame.seq);
    } else if (frame.type === "queue") {
      showQueue(frame.position, frame.wait_seconds);
      emit("queue", { position: frame.position, wait_seconds: frame.wait_seconds });
    } else if (frame.type === "error" && frame.code === "rate_limited") {
      // An abuse limit (docs/protocol.md, "Limits"): the server closes this socket next. Say so, and wait at
      // least what it asks before reconnecting (reconnect() adds its own back-off on top).
      note.textContent = T.busy;
      note.hidden = false;
      state.waitUntil = Date.now() + 1000 * (frame.retry_after || 5);
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
      if (failed) setState(failed, "failed", T.failed + frame.message);
    }
  }

  function backoff() {
    return Math.min(30000, 500 * Math.pow(2, state.retry++)) * (0.5 + Math.random() / 2);
  }

  function reconnect() {
    state.ready = false;
    inflight = {};
    note.hidden = false;
    refreshPending();
    clearTimeout(state.timer);
    var wait = Math.max(backoff(), (state.waitUntil || 0) - Date.now());
    state.timer = setTimeout(function () { state.timer = null; connect(); }, wait);
  }

  // identify() and setAttributes() change the session body: start a new session with it (once per tick).
  var restartPending = false;
  function restartSoon() {
    if (!state.started || restartPending) return;
    restartPending = true;
    setTimeout(function () {
      restartPending = false;
      state.stale = true;  // a session request on its way now carries the old context
      hangUp();
    });
  }

  function sessionBody() {
    var body = { site_key: siteKey, visitor_token: state.token,
                 page: { url: location.href, title: document.title, referrer: document.referrer },
                 language: lang, screen: screen.width + "x" + screen.height, attributes: state.attributes };
    try { body.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { /* old browser */ }
    if (state.identity) body.identity = state.identity;
    if (state.email) body.email = state.email;
    return JSON.stringify(body);
  }

  // The site's settings and whether an agent is online, from each session response.
  function applySettings(s) {
    var w = s.widget || {}, left = w.position === "left";
    setColor(w.color);
    host.style.setProperty(left ? "left" : "right", "20px", "important");
    host.style.setProperty(left ? "right" : "left", "auto", "important");
    panel.classList.toggle("left", left);
    welcome.textContent = (w.welcome || {})[zh ? "zh" : "en"] || T.welcome;
    status.textContent = s.agents_online ? T.online : T.away;
    status.hidden = false;
    emailBox.hidden = !!s.agents_online || state.identified || load("gaveEmail", false);
    state.maxBytes = s.upload_max_bytes || state.maxBytes;
    applyInvitations(w);  // proactive invitations (below)
    applyHours(s.hours);  // outside business hours: the message form (below)
    applyPrechat(s.prechat);  // a new visitor of a site that asks first: the pre-chat form (below)
  }

  // Leave a message: the email typed with it goes with a session request; until one has carried it, it waits
  // in localStorage and every session request carries it.
  function emailSent() { state.email = null; save("email", null); }
  function sendEmail() {
    var email = state.email;
    if (!state.token) return;  // connect() carries it
    fetch(origin + "/api/v1/widget/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ site_key: siteKey, visitor_token: state.token, email: email })
    }).then(function (r) { return r.ok ? r.json() : {}; }).then(function (s) {
      if (s.visitor_id && s.visitor_id === state.visitorId) { state.token = s.visitor_token; save("token", s.visitor_token); }
      if (s.visitor_id && email === state.email) emailSent();
    }).catch(function () { /* the next session request carries it */ });
  }

  function connect() {
    state.started = true;
    state.stale = false;
    var email = state.email;
    fetch(origin + "/api/v1/widget/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: sessionBody()
    }).then(function (r) {
      if (r.status === 400 && email === state.email) emailSent();  // refused: the session must not keep failing on it
      if (r.status === 429) {
        state.waitUntil = Date.now() + 1000 * (parseInt(r.headers.get("Retry-After"), 10) || 60);
        note.textContent = T.busy;
        note.hidden = false;
      }
      if (!r.ok) throw new Error("session " + r.status);
      return r.json();
    }).then(function (s) {
      if (s.visitor_id !== state.visitorId) {
        // A new visitor (first visit, an expired token, another identity): its thread starts empty.
        if (state.visitorId) { clearList(); state.seen = {}; state.shownSeq = 0; state.agentRead = 0; setUnread(0); showOutbox(); }
        state.visitorId = s.visitor_id;
      }
      state.identified = !!s.identified;
      state.token = s.visitor_token; save("token", s.visitor_token);
      if (email && email === state.email) emailSent();
      applySettings(s);
      title.textContent = s.site_name || T.title;
      panel.setAttribute("aria-label", title.textContent);
      if (state.stale) { reconnect(); return; }
      if (state.mode === "poll") { poll(true); return; }
      var ws = new WebSocket(s.ws_url + "?token=" + encodeURIComponent(s.visitor_token));
      var opened = false;
      state.ws = ws;
      ws.onopen = function () {
        opened = true;
        ws.heardAt = Date.now();
        state.wsFailures = 0;
        ws.send(JSON.stringify({ type: "hello", last_seq: state.shownSeq }));
      };
      ws.onmessage = function (e) {
        ws.heardAt = Date.now();
        try { onFrame(JSON.parse(e.data)); } catch (err) { /* ignore */ }
      };
      ws.onclose = function (e) {
        if (state.ws === ws) state.ws = null;
        if (e.code === 4401) { state.token = null; save("token", null); }
        if (!opened && !ws.deliberate && ++state.wsFailures >= 2) state.mode = "poll";
        reconnect();
      };
    }).catch(reconnect);
  }

  // The browser knows before the socket does: drop a socket when the network goes, and when it comes back
  // skip whatever is left of the backoff.
  function hangUp() {
    if (state.ws) { state.ws.deliberate = true; state.ws.close(); }  // not a blocked socket: no long-polling for it
    if (state.pollAbort) state.pollAbort.abort();
  }
  window.addEventListener("offline", hangUp);

  // Heartbeat, the server's (welcome.heartbeat_seconds, 20 s by default): after 0.6 of it without a frame the
  // widget pings, and the server, which pings only a client it has not heard from for a whole heartbeat, stays
  // quiet: one round trip per interval. After a heartbeat and 2 s the socket is dead (a laptop that slept, a
  // network that changed under it) and a new connection catches up; in a hidden tab, whose timers may run once a
  // minute so that only the server's pings arrive, after two. A dead socket's close can take minutes, so it is
  // dropped without waiting for one. Checked every fifth of a heartbeat, at most every 4 s.
  var heartbeatTimer = null;
  function heartbeat() {
    var ws = state.ws, beat = (ws && ws.beat) || 20000;
    var silent = ws && ws.readyState === 1 && ws.heardAt ? Date.now() - ws.heardAt : 0;
    if (silent > (document.hidden ? 2 * beat : beat + 2000)) {
      ws.onclose = null;
      ws.deliberate = true;
      try { ws.close(); } catch (e) { /* already gone */ }
      state.ws = null;
      reconnect();
    } else if (silent > 0.6 * beat) {
      ws.send(JSON.stringify({ type: "ping" }));
    }
    clearTimeout(heartbeatTimer);
    heartbeatTimer = setTimeout(heartbeat, Math.min(4000, beat / 5));
  }
  heartbeat();
  window.addEventListener("online", function () {
    if (state.timer) { clearTimeout(state.timer); state.timer = null; state.retry = 0; connect(); }
  });

  // -- long-polling ----------------------------------------------------------------------------------------
  var postQueue = [], posting = false;

  function pollUrl() { return origin + "/lp/visitor?token=" + encodeURIComponent(state.token); }

  function poll(first) {
    // The first poll answers at once, so the welcome (and the outbox flush) need not wait for a message.
    var abort = state.pollAbort = window.AbortController ? new AbortController() : null;
    fetch(pollUrl() + "&last_seq=" + state.shownSeq + (first ? "&wait=0" : ""), abort ? { signal: abort.signal } : {}).then(function (r) {
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
    state.outbox.forEach(function (m) { render({ client_id: m.client_id, sender: "visitor", body: m.body, at: m.at }, true); });
  }

  // -- outside business hours, and email (docs/widget.md, "Outside business hours") ----------------------------
  // The session says whether the team is in (`hours`); when it is not, a form takes an email and a message
  // instead of the chat box, and the answer comes by email. The header's envelope emails the conversation.
  var TM = zh ? {
    leave: "请留言，我们会通过邮件回复您。", yourEmail: "您的邮箱", yourMessage: "您的留言", sendMessage: "发送留言",
    badEmail: "请输入有效的邮箱地址，例如 name@example.com。", empty: "请输入留言内容。", notSent: "未能发送，请重试。",
    thanks: "谢谢！我们会回复到 EMAIL。", transcript: "通过邮件发送此对话", sendTranscript: "发送",
    transcriptSent: "已将此对话发送到 EMAIL。", away: "我们暂时不在。",
    back: "我们将于 D H 回来（Z）。", days: { mon: "周一", tue: "周二", wed: "周三", thu: "周四", fri: "周五", sat: "周六", sun: "周日" }
  } : {
    leave: "Leave us a message and we'll reply by email.", yourEmail: "Your email", yourMessage: "Your message",
    sendMessage: "Send message", badEmail: "Enter a valid email address, like name@example.com.",
    empty: "Write your message.", notSent: "Not sent. Please try again.", thanks: "Thanks! We'll reply to EMAIL.",
    transcript: "Email me this conversation", sendTranscript: "Send", transcriptSent: "We've sent this conversation to EMAIL.",
    away: "We're away at the moment."
  };
  css += ".hours{background:#fffaeb;color:#7a2e0e;padding:8px 12px;font-size:13px}" +
    ".offline{display:flex;flex-direction:column;align-items:stretch;gap:6px;padding:10px 12px;border-top:1px solid #e4e7ec;background:#fff}" +
    ".offline input,.offline textarea{border:1px solid #d0d5dd;border-radius:6px;padding:8px;flex:none;max-height:none}" +
    ".offline input[aria-invalid=true],.offline textarea[aria-invalid=true]{border-color:#b42318;background:#fef3f2}" +
    ".offline button{align-self:flex-end;border:0;border-radius:6px;background:#2956d6;color:#fff;padding:8px 14px}" +
    ".offline .err{color:#b42318;font-size:12px}.offline .ok{color:#027a48;font-size:13px}";
  setColor(COLOR);
  var hoursNote = h("div", "hours", { role: "status", hidden: "" });
  function field(tag, label, attrs) { return h(tag, "", Object.assign({ "aria-label": label, placeholder: label }, attrs)); }
  var offEmail = field("input", TM.yourEmail, { type: "email", autocomplete: "email", maxlength: "320" });
  var offText = field("textarea", TM.yourMessage, { rows: "4" });
  var offError = h("div", "err", { role: "alert", hidden: "" }), offDone = h("div", "ok", { role: "status", hidden: "" });
  var offlineForm = h("form", "offline", { hidden: "", "aria-label": TM.leave },
                      [h("div", "", {}, [TM.leave]), offEmail, offText, offError, h("button", "", { type: "submit" }, [TM.sendMessage])]);
  var mailButton = h("button", "x", { type: "button", "aria-label": TM.transcript, title: TM.transcript, "aria-expanded": "false" }, ["✉"]);
  var trEmail = field("input", TM.yourEmail, { type: "email", autocomplete: "email", maxlength: "320" });
  var trError = h("div", "err", { role: "alert", hidden: "" }), trDone = h("div", "ok", { role: "status", hidden: "" });
  var transcriptForm = h("form", "offline", { hidden: "", "aria-label": TM.transcript },
                         [h("div", "", {}, [TM.transcript]), trEmail, trError, trDone, h("button", "", { type: "submit" }, [TM.sendTranscript])]);
  closeButton.parentNode.insertBefore(mailButton, closeButton);
  panel.insertBefore(hoursNote, list);
  panel.insertBefore(transcriptForm, list);
  panel.appendChild(offlineForm);
  offEmail.value = trEmail.value = load("replyEmail", "") || "";

  function backText(hours) {
    if (!zh) return hours.text || TM.away;
    if (!hours.back_time) return TM.away;
    return TM.back.replace("D", TM.days[hours.back_weekday] || "").replace("H", hours.back_time).replace("Z", hours.timezone);
  }
  // Closed: the notice and the message form instead of the chat box (and of the "leave your email" box).
  function applyHours(hours) {
    var closed = !!hours && hours.open === false;
    hoursNote.textContent = closed ? backText(hours) : "";
    hoursNote.hidden = !closed;
    offlineForm.hidden = !closed;
    form.hidden = closed;
    if (closed) { emailBox.hidden = true; status.textContent = hoursNote.textContent; }
  }
  function showError(node, input, text) {
    node.textContent = text; node.hidden = !text;
    if (input) input.setAttribute("aria-invalid", text ? "true" : "false");
    if (input && text) input.focus();
  }
  function postJson(path, body) {
    return fetch(origin + path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
      .then(function (r) { return r.json().catch(function () { return {}; }).then(function (data) { data.status_code = r.status; return data; }); });
  }
  // One client_id per draft: a retry after a network failure is stored once.
  var draftId = load("offlineDraft", null);
  offlineForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var email = offEmail.value.trim(), text = offText.value;
    showError(offError, null, ""); offDone.hidden = true;
    if (!EMAIL.test(email)) { showError(offError, offEmail, TM.badEmail); return; }
    offEmail.setAttribute("aria-invalid", "false");
    if (!text.trim()) { showError(offError, offText, TM.empty); return; }
    offText.setAttribute("aria-invalid", "false");
    if (!draftId) { draftId = newId().replace(/[^A-Za-z0-9_-]/g, ""); save("offlineDraft", draftId); }
    postJson("/api/v1/widget/offline-message", { visitor_token: state.token, email: email, message: text, client_id: draftId })
      .then(function (data) {
        if (data.status_code === 202) {
          draftId = null; save("offlineDraft", null); save("replyEmail", email);
          offText.value = ""; trEmail.value = email;
          offDone.textContent = TM.thanks.replace("EMAIL", email);
          offlineForm.insertBefore(offDone, offError);
          offDone.hidden = false;
        } else if (data.status_code === 400 || data.status_code === 413) {
          showError(offError, data.error === "invalid_email" ? offEmail : offText, data.message || TM.notSent);
        } else {
          showError(offError, null, TM.notSent);
        }
      }, function () { showError(offError, null, TM.notSent); });
  });

  var transcriptId = null;
  mailButton.addEventListener("click", function () {
    var show = transcriptForm.hidden;
    transcriptForm.hidden = !show;
    mailButton.setAttribute("aria-expanded", String(show));
    trDone.hidden = true; showError(trError, null, "");
    transcriptId = newId().replace(/[^A-Za-z0-9_-]/g, "");  // a double click on Send: one email
    if (show) trEmail.focus();
  });
  transcriptForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var email = trEmail.value.trim();
    trDone.hidden = true;
    if (!EMAIL.test(email)) { showError(trError, trEmail, TM.badEmail); return; }
    showError(trError, trEmail, "");
    postJson("/api/v1/widget/transcript", { visitor_token: state.token, email: email, request_id: transcriptId })
      .then(function (data) {
        if (data.status_code === 202) {
          save("replyEmail", email);
          trDone.textContent = TM.transcriptSent.replace("EMAIL", email); trDone.hidden = false;
        } else {
          showError(trError, data.error === "invalid_email" ? trEmail : null, data.message || TM.notSent);
        }
      }, function () { showError(trError, null, TM.notSent); });
  });

  // -- the pre-chat form (docs/widget.md, "Pre-chat form") -----------------------------------------------------
  // While the session says `prechat` (the site's form is on and this visitor has not answered it nor started a
  // conversation), the form stands in for the composer; its answers go to /api/v1/widget/prechat, which checks
  // them against the site's settings. Labels and options are the site's text: set with textContent only.
  var TP = zh ? {
    intro: "开始聊天前，请告诉我们一些信息。", name: "您的姓名", email: "您的邮箱", optional: "（选填）",
    question: "我们能帮您什么？", start: "开始聊天", needName: "请输入您的姓名。", needEmail: "请输入您的邮箱地址。",
    needChoice: "请选择一项。", notSent: "未能保存，请重试。"
  } : {
    intro: "Before we start, tell us a little about you.", name: "Your name", email: "Your email",
    optional: " (optional)", question: "What can we help with?", start: "Start chat", needName: "Enter your name.",
    needEmail: "Enter your email address.", needChoice: "Choose one of the options.", notSent: "Not saved. Please try again."
  };
  css += ".prechat label{display:flex;flex-direction:column;gap:2px;font-size:13px}" +
    ".prechat fieldset{border:0;padding:0;display:flex;flex-direction:column;gap:4px}.prechat legend{font-size:13px;padding:0 0 2px}" +
    ".prechat fieldset[aria-invalid=true]{outline:1px solid #b42318;outline-offset:2px}" +
    ".prechat label.opt{flex-direction:row;align-items:center;gap:6px}.prechat input[type=radio]{padding:0;margin:0}";
  setColor(COLOR);
  var preName = h("input", "", { type: "text", autocomplete: "name", maxlength: "200", "aria-describedby": "deskbell-prechat-error" });
  var preEmail = h("input", "", { type: "email", autocomplete: "email", maxlength: "320", "aria-describedby": "deskbell-prechat-error" });
  var preNameLabel = h("label"), preEmailLabel = h("label");
  var preLegend = h("legend"), preChoices = h("fieldset", "", { role: "radiogroup", "aria-describedby": "deskbell-prechat-error" }, [preLegend]);
  var preError = h("div", "err", { id: "deskbell-prechat-error", role: "alert", hidden: "" });
  var prechatForm = h("form", "offline prechat", { hidden: "", novalidate: "", "aria-label": TP.intro },
                      [h("div", "", {}, [TP.intro]), preNameLabel, preEmailLabel, preChoices, preError,
                       h("button", "", { type: "submit" }, [TP.start])]);
  panel.insertBefore(prechatForm, form);
  var preSpec = null, preAway = false;

  function preField(label, input, mode, text) {
    label.textContent = "";
    label.appendChild(document.createTextNode(text + (mode === "optional" ? TP.optional : "")));
    label.appendChild(input);
    label.hidden = mode !== "optional" && mode !== "required";
    input.setAttribute("aria-required", String(mode === "required"));
    input.setAttribute("aria-invalid", "false");
  }
  // The session's `prechat`: show the form (instead of the composer) or, once answered elsewhere, the composer.
  function applyPrechat(spec) {
    var show = !!spec && offlineForm.hidden && !state.outbox.length;
    if (!show) {
      if (!prechatForm.hidden) { prechatForm.hidden = true; form.hidden = !offlineForm.hidden; }  // closed: the message form
      preSpec = null;
      return;
    }
    preAway = !emailBox.hidden;  // the "leave your email" box, for after the form
    form.hidden = true; emailBox.hidden = true;
    if (!prechatForm.hidden && JSON.stringify(spec) === JSON.stringify(preSpec)) return;  // keep what is typed
    preSpec = spec;
    preField(preNameLabel, preName, spec.name, TP.name);
    preField(preEmailLabel, preEmail, spec.email, TP.email);
    preEmail.value = preEmail.value || load("replyEmail", "") || "";
    while (preChoices.lastChild !== preLegend) preChoices.removeChild(preChoices.lastChild);
    preLegend.textContent = (spec.question || {})[zh ? "zh" : "en"] || TP.question;
    (spec.options || []).forEach(function (label) {
      preChoices.appendChild(h("label", "opt", {}, [h("input", "", { type: "radio", name: "deskbell-choice", value: label }), label]));
    });
    preChoices.hidden = !(spec.options || []).length;
    preChoices.setAttribute("aria-invalid", "false");
    showError(preError, null, "");
    prechatForm.hidden = false;
    if (state.open && (!root.activeElement || root.activeElement === box)) focusTarget().focus();  // opened first
  }
  // Where focus goes when the panel opens: the form's first field while it is shown, else the composer.
  function focusTarget() {
    if (prechatForm.hidden) return box;
    return [preName, preEmail].filter(function (i) { return !i.parentNode.hidden; })[0] ||
           preChoices.querySelector("input") || box;
  }
  function preChoice() {
    var picked = preChoices.querySelector("input:checked");
    return picked ? picked.value : "";
  }
  function preRefuse(field, text) {
    var input = field === "name" ? preName : field === "email" ? preEmail : null;
    preChoices.setAttribute("aria-invalid", String(field === "choice"));
    showError(preError, input, text);
    if (field === "choice") (preChoices.querySelector("input:checked") || preChoices.querySelector("input")).focus();
  }
  prechatForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var spec = preSpec || {}, name = preName.value.trim(), email = preEmail.value.trim(), choice = preChoice();
    [preName, preEmail].forEach(function (i) { i.setAttribute("aria-invalid", "false"); });
    if (spec.name === "required" && !name) return preRefuse("name", TP.needName);
    if (spec.email === "required" && !email) return preRefuse("email", TP.needEmail);
    if (spec.email !== "off" && email && !EMAIL.test(email)) return preRefuse("email", TM.badEmail);
    if ((spec.options || []).length && !choice) return preRefuse("choice", TP.needChoice);
    preChoices.setAttribute("aria-invalid", "false");
    postJson("/api/v1/widget/prechat", { visitor_token: state.token, name: name, email: email, choice: choice })
      .then(function (data) {
        if (data.status_code === 200) {
          if (data.email) { save("replyEmail", data.email); save("gaveEmail", true); offEmail.value = trEmail.value = data.email; }
          preSpec = null;
          prechatForm.hidden = true; form.hidden = false; showError(preError, null, "");
          emailBox.hidden = !preAway || !!data.email;
          if (data.hours) applyHours(data.hours);  // the chosen team may be out: then the message form
          (offlineForm.hidden ? box : offEmail).focus();
          emit("prechat", { name: data.name, email: data.email, choice: data.choice });
        } else if (data.status_code === 400) {
          var text = { missing_name: TP.needName, missing_email: TP.needEmail, invalid_email: TM.badEmail,
                       missing_choice: TP.needChoice, invalid_choice: TP.needChoice }[data.error];
          preRefuse(data.field, text || data.message || TP.notSent);
        } else if (data.status_code === 409) {
          applyPrechat(null);  // the site turned the form off meanwhile: chat straight away
        } else {
          preRefuse(null, TP.notSent);
        }
      }, function () { preRefuse(null, TP.notSent); });
  });

  // -- proactive invitations (docs/widget.md, "Invitations") ---------------------------------------------------
  // The site's rules come with its settings (`widget.invitations`). The first rule that is on and matches this
  // page's path starts a timer, again on a single-page app's URL change (pushState, replaceState, popstate);
  // when it runs out the invitation shows as a bubble beside the launcher, unless the chat is open, the visitor
  // already has a thread, or a cap says no: one every `hours` a browser (localStorage), `per_session` a tab
  // (sessionStorage). A click opens the chat with the invitation as its first line; the visitor's first message
  // after that records it as the custom attribute `invitation`, which agents see in the visitor panel.
  var TI = zh ? { dismiss: "关闭邀请" } : { dismiss: "Dismiss invitation" };
  css += ".invite{position:absolute;right:0;bottom:68px;display:flex;align-items:flex-start;gap:2px;width:max-content;" +
    "max-width:min(280px,calc(100vw - 40px));padding:4px;background:#fff;color:#101828;border-radius:12px;box-shadow:0 4px 16px #0003}" +
    ".invite.left{right:auto;left:0}.invite .it{border:0;background:none;color:inherit;text-align:left;padding:8px 4px 8px 10px;" +
    "cursor:pointer;white-space:pre-wrap;overflow-wrap:anywhere}.invite .ix{flex:none;border:0;background:none;color:#667085;" +
    "width:28px;height:28px;border-radius:50%;cursor:pointer;font-size:18px;line-height:1}.invite .ix:hover{background:#f2f4f7}" +
    "@media (prefers-reduced-motion:no-preference){.invite{animation:deskbell-in .25s ease-out}" +
    "@keyframes deskbell-in{from{opacity:0;transform:translateY(8px)}}}@media (max-width:480px){.panel.open~.invite{display:none}}";
  setColor(COLOR);
  var inviteText = h("button", "it", { type: "button", "aria-controls": "deskbell-panel", "aria-haspopup": "dialog" });
  var inviteClose = h("button", "ix", { type: "button", "aria-label": TI.dismiss, title: TI.dismiss }, ["×"]);
  var bubble = h("div", "invite", { role: "status", "aria-live": "polite", hidden: "" }, [inviteText, inviteClose]);
  root.appendChild(bubble);  // after the launcher: `.panel.open+.launch` (phones) must stay true
  var inv = { rules: [], key: null, hours: 24, perSession: 1, path: location.pathname, pageAt: Date.now(),
              timer: null, rule: null, shown: null, readyAt: 0 };

  function invitationText(rule) { var t = rule.text || {}; return (zh ? t.zh || t.en : t.en || t.zh) || ""; }
  function ruleMatches(rule, path) {
    if (!rule.on || typeof rule.path !== "string" || !invitationText(rule)) return false;
    if (rule.match === "equals") return path === rule.path;
    if (rule.match === "contains") return path.indexOf(rule.path) !== -1;
    return path.indexOf(rule.path) === 0;
  }
  function sessionCount(add) {
    try {
      var n = (parseInt(sessionStorage.getItem(store + "invitations"), 10) || 0) + (add || 0);
      if (add) sessionStorage.setItem(store + "invitations", String(n));
      return n;
    } catch (e) { return add ? 1 : 0; }
  }
  function capsAllow() {
    return Date.now() - (load("invitedAt", 0) || 0) >= inv.hours * 3600000 && sessionCount() < inv.perSession;
  }
  function hideInvitation() { bubble.hidden = true; inv.shown = null; }

  // The settings of each session response: the rules and caps, and the greeting of an invitation taken earlier.
  function applyInvitations(w) {
    var found = w.invitations || {};
    inv.rules = Array.isArray(found.rules) ? found.rules : [];
    inv.hours = found.hours > 0 ? found.hours : 24;
    inv.perSession = found.per_session > 0 ? found.per_session : 1;
    bubble.classList.toggle("left", w.position === "left");
    var taken = load("invitation", null);
    if (taken && taken.v === state.visitorId) welcome.textContent = taken.text;
    var key = JSON.stringify(found);
    if (key !== inv.key) { inv.key = key; startTimer(); }  // a reconnect's same settings leave the timer running
  }
  // The first matching rule's timer, counted from when this page (or SPA URL) was entered.
  function startTimer() {
    clearTimeout(inv.timer);
    inv.rule = null;
    for (var i = 0; i < inv.rules.length; i++) if (ruleMatches(inv.rules[i], inv.path)) { inv.rule = inv.rules[i]; break; }
    var wait = 1000 * Math.min(Math.max(+(inv.rule || {}).seconds || 0, 0), 600) - (Date.now() - inv.pageAt);
    if (inv.rule) inv.timer = setTimeout(tryInvitation, Math.max(0, wait));
  }
  function onUrl() {
    if (location.pathname === inv.path) return;
    inv.path = location.pathname;
    inv.pageAt = Date.now();
    if (inv.shown && !ruleMatches(inv.shown, inv.path)) hideInvitation();
    startTimer();
  }
  function tryInvitation() {
    var rule = inv.rule;
    if (!rule || inv.shown || state.open || !capsAllow()) return;
    // The thread is replayed just after the welcome frame: wait for it, so a visitor who is chatting is left alone.
    if (!state.ready) { inv.readyAt = 0; inv.timer = setTimeout(tryInvitation, 1000); return; }
    if (!inv.readyAt) inv.readyAt = Date.now();
    if (Date.now() - inv.readyAt < 1000) { inv.timer = setTimeout(tryInvitation, 1000); return; }
    if (state.shownSeq > 0 || state.outbox.length || load("invitation", { v: null }).v === state.visitorId) return;
    inv.shown = rule;
    save("invitedAt", Date.now());
    sessionCount(1);
    inviteText.textContent = "";
    bubble.hidden = false;
    setTimeout(function () { inviteText.textContent = invitationText(rule); });  // a change the live region reads out
  }
  inviteClose.addEventListener("click", function () {
    var focused = root.activeElement === inviteClose || root.activeElement === inviteText;
    hideInvitation();
    if (focused) launcher.focus();
  });
  bubble.addEventListener("keydown", function (e) { if (e.key === "Escape") { e.stopPropagation(); inviteClose.click(); } });
  inviteText.addEventListener("click", function () {
    var text = invitationText(inv.shown || {});
    if (!text) return;
    save("invitation", { v: state.visitorId, id: inv.shown.id, text: text });
    welcome.textContent = text;
    hideInvitation();
    toggle(true);
  });
  // Called by queue(): the visitor's first message after taking an invitation records which one brought them.
  function invitationAnswered() {
    var taken = load("invitation", null);
    if (!taken || taken.recorded || taken.v !== state.visitorId) return;
    state.attributes.invitation = taken.text;  // also in every later session request of this page
    taken.recorded = true;
    save("invitation", taken);
    if (state.token) postJson("/api/v1/widget/session", { site_key: siteKey, visitor_token: state.token, attributes: { invitation: taken.text } });
  }
  ["pushState", "replaceState"].forEach(function (name) {
    var original = history[name];
    if (typeof original !== "function") return;
    history[name] = function () {
      var result = original.apply(this, arguments);
      setTimeout(onUrl);
      return result;
    };
  });
  window.addEventListener("popstate", function () { onUrl(); });

  // -- the public API: calls queued by the snippet's stub run first, so identify() is in the first session --
  var api = {
    version: 1,
    open: function () { toggle(true); },
    close: function () { toggle(false); },
    toggle: function () { toggle(); },
    identify: function (who) {
      who = who || {};
      state.identity = {};
      ["external_id", "name", "email", "hash"].forEach(function (k) {
        if (who[k] != null) state.identity[k] = String(who[k]);
      });
      restartSoon();
    },
    setAttributes: function (attrs) {
      for (var k in attrs || {}) state.attributes[k] = attrs[k];
      restartSoon();
    },
    on: function (name, fn) {
      (handlers[name] = handlers[name] || []).push(fn);
      if (name === "ready" && fired.ready) fn(fired.ready);
      return api;
    }
  };
  window.Deskbell = api;
  labelLauncher();
  // Show what is still waiting to be delivered (even offline), then connect.
  showOutbox();
  (document.body || document.documentElement).appendChild(host);
  ((stub && stub.q) || []).forEach(function (call) {
    try { api[call[0]].apply(api, [].slice.call(call, 1)); } catch (e) { setTimeout(function () { throw e; }); }
  });
  connect();
})();
