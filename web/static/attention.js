// Attention: the page title counts unread messages ("(3) Inbox · Deskbell"), and while the tab is hidden a
// new conversation, or a visitor's message in one assigned to this agent, rings a short tone and shows a
// browser notification (with permission, asked on a click). The stream's `attention` event says which
// (web/edge/console.py); the list's `data-unread` gives the count. No audio file, no network.
(function () {
  "use strict";

  var baseTitle = null, audio = null;

  function showUnread() {
    var list = document.querySelector("#conversation-list .inbox-body");
    if (!list) return;
    if (baseTitle === null) baseTitle = document.title;
    var unread = parseInt(list.dataset.unread, 10) || 0;
    document.title = (unread > 0 ? "(" + unread + ") " : "") + baseTitle;
  }
  document.addEventListener("DOMContentLoaded", showUnread);
  document.addEventListener("htmx:afterSwap", function (evt) {
    if (evt.target.closest && evt.target.closest("#conversation-list")) showUnread();
  });

  // Browsers start audio only after a gesture on the page: make the context on the first one, use it later.
  function unlockAudio() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!audio && Context) audio = new Context();
    if (audio && audio.state === "suspended") audio.resume();
  }
  document.addEventListener("pointerdown", unlockAudio, { once: true });
  document.addEventListener("keydown", unlockAudio, { once: true });

  function chime() {
    if (!audio || audio.state !== "running") return;
    var now = audio.currentTime, tone = audio.createOscillator(), gain = audio.createGain();
    tone.type = "sine";
    tone.frequency.setValueAtTime(880, now);
    tone.frequency.setValueAtTime(1320, now + 0.09);
    gain.gain.setValueAtTime(0.0001, now);
    gain.gain.exponentialRampToValueAtTime(0.2, now + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + 0.3);
    tone.connect(gain).connect(audio.destination);
    tone.start(now);
    tone.stop(now + 0.32);
  }

  function notify(alert) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    var note = new Notification(alert.new ? "New conversation: " + alert.name : alert.name, {
      body: alert.preview,
      tag: "deskbell-" + alert.conversation_id,  // one per conversation: a newer message replaces it
    });
    note.onclick = function () {
      window.focus();
      var row = document.getElementById("conv-" + alert.conversation_id);
      var href = row ? row.querySelector("a").getAttribute("href") : null;
      if (href && window.deskbell) window.deskbell.open(alert.conversation_id, href);
      note.close();
    };
  }

  if (window.deskbell) {
    window.deskbell.on("attention", function (data) {
      if (!document.hidden) return;  // the agent is looking: the list and the title say enough
      var alert = JSON.parse(data);
      chime();
      notify(alert);
    });
  }

  // "Enable notifications": shown while the browser has not been asked; asking needs a click.
  function offerNotifications() {
    var button = document.querySelector("[data-enable-notifications]");
    if (button) button.hidden = !("Notification" in window) || Notification.permission !== "default";
  }
  document.addEventListener("DOMContentLoaded", offerNotifications);
  document.addEventListener("click", function (evt) {
    if (!evt.target.closest || !evt.target.closest("[data-enable-notifications]")) return;
    unlockAudio();
    Notification.requestPermission().then(offerNotifications);
  });
})();
