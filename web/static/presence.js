// Presence heartbeat: tells the server this agent still has a console open (web/agent/presence.py). Without one
// for the grace period (DESKBELL_PRESENCE_GRACE_SECONDS), the sweeper turns the agent away; the next heartbeat
// brings them back unless they chose away or offline themselves.
(function () {
  "use strict";

  function menu() {
    return document.querySelector("form.presence[data-heartbeat-url]");
  }

  // The page's CSRF token: the body's hx-headers, as htmx (and console.js) send it.
  function headers() {
    var found = {};
    try {
      var extra = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
      for (var k in extra) found[k] = extra[k];
    } catch (e) { /* no token: the server refuses, and nothing else breaks */ }
    return found;
  }

  // Show what the server says: a choice made in another tab, or the sweeper's away undone by this heartbeat.
  function show(presence) {
    var form = menu();
    var select = form && form.querySelector("select[name=presence]");
    if (!select || select.value === presence || document.activeElement === select) return;
    select.value = presence;
    var dot = form.querySelector(".dot");
    if (dot) dot.className = "dot dot-" + presence;
  }

  var inFlight = false;
  function beat() {
    var form = menu();
    if (!form || inFlight) return;
    inFlight = true;
    fetch(form.getAttribute("data-heartbeat-url"), { method: "POST", headers: headers(), credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data && data.presence) show(data.presence); })
      .catch(function () { /* offline: the grace period runs; the next beat tries again */ })
      .then(function () { inFlight = false; });
  }

  // Browsers slow a hidden tab's timers to one a minute, about the grace period itself, and agents keep the
  // console in a background tab all day. A dedicated worker's timer is not slowed, so it keeps the time.
  function start() {
    var form = menu();
    if (!form) return;
    var every = Math.max(1, parseInt(form.getAttribute("data-heartbeat-seconds"), 10) || 20) * 1000;
    var fallback = null;
    function pageClock() { if (fallback === null) fallback = setInterval(beat, every); }
    beat();
    try {
      var clock = new Worker(form.getAttribute("data-heartbeat-worker"));
      clock.onmessage = beat;
      clock.onerror = pageClock;
      clock.postMessage(every);
    } catch (e) {
      pageClock();
    }
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") beat();
    });
    window.addEventListener("online", beat);
  }
  document.addEventListener("DOMContentLoaded", start);

  // The roster is re-fetched on every presence change; keep it open if the agent had opened it.
  var rosterOpen = null;
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var target = evt.detail.target;
    if (!target || !target.querySelector) return;
    var roster = target.matches("details.roster") ? target : target.querySelector("details.roster");
    if (roster) rosterOpen = roster.open;
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (rosterOpen === null) return;
    var roster = document.querySelector("details.roster");
    if (roster) roster.open = rosterOpen;
    rosterOpen = null;
  });
})();
