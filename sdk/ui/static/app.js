// unitcost ui: keeps a page live. The server says when the store changed (server-sent events);
// the page then fetches itself again and swaps its content. No dependencies, no CDN.
(function () {
  "use strict";
  var fresh = document.getElementById("freshness");
  var text = document.getElementById("fresh-text");
  if (!fresh || !window.EventSource || !window.fetch) return;
  var computed = parseFloat(fresh.dataset.computed) * 1000;
  var live = false;
  var source = null;

  function ago(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }
  function show() {
    text.textContent = (live ? "Live · " : "Not live (reconnecting) · ") + "data read " + ago(Date.now() - computed);
    fresh.classList.toggle("live", live);
  }
  function refresh() {
    var active = document.activeElement && document.activeElement.id;
    fetch(window.location.href, { headers: { "Accept": "text/html" } }).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (!html) return;
      var doc = new DOMParser().parseFromString(html, "text/html");
      var main = doc.getElementById("content"), state = doc.getElementById("freshness");
      if (!main || !state) return;
      // Keep a form someone is typing in: swap only when no input of the page has the focus.
      if (active && document.getElementById(active) && /INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName)) return;
      document.getElementById("content").replaceChildren.apply(
        document.getElementById("content"), Array.prototype.slice.call(main.childNodes));
      fresh.dataset.version = state.dataset.version;
      computed = parseFloat(state.dataset.computed) * 1000;
      if (source) source.close();
      connect();  // the stream's URL carries the version the page now shows
      document.dispatchEvent(new CustomEvent("unitcost:refreshed"));
      show();
    }).catch(function () {});
  }
  function connect() {
    source = new EventSource("/events?v=" + encodeURIComponent(fresh.dataset.version || ""));
    source.onopen = function () { live = true; show(); };
    source.onerror = function () { live = false; show(); };
    source.addEventListener("changed", function (ev) {
      if (ev.data !== fresh.dataset.version) refresh();
    });
  }
  if (fresh.dataset.version) connect();
  show();
  setInterval(show, 1000);
  window.addEventListener("pagehide", function () { if (source) source.close(); });
})();
