// presence.js's clock: a dedicated worker's timer keeps time in a hidden tab, where the page's own is slowed to
// once a minute. It is told the interval in milliseconds and ticks until the tab closes.
var timer = null;
onmessage = function (evt) {
  clearInterval(timer);
  timer = setInterval(function () { postMessage("beat"); }, evt.data);
};
