// Live update: follow the batch stream and, when a batch lands, fetch this
// page again and swap its data section in place (no reload). The page works
// without this script; it only keeps it current.
(function () {
  "use strict";
  function start() {
    var root = document.querySelector("[data-live]");
    var status = document.getElementById("live-status");
    if (!root || !window.EventSource || !window.fetch) { return; }
    var url = "/api/v1/stream";
    var producer = root.getAttribute("data-producer");
    if (producer) { url += "?producer=" + encodeURIComponent(producer); }
    var source = new EventSource(url);
    source.addEventListener("open", function () {
      status.textContent = "Live: the page updates when a batch lands.";
    });
    source.addEventListener("error", function () {
      status.textContent = "Live updates interrupted; reconnecting…";
    });
    source.addEventListener("batch", function (e) {
      var batch = JSON.parse(e.data).batch;
      fetch(window.location.href, { headers: { "Accept": "text/html" }, cache: "no-store" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.querySelector("[data-live]");
          if (fresh) {
            root.replaceWith(fresh);
            root = fresh;
          }
          status.textContent = "Updated with batch " + batch.bot_log_id + " ending " + batch.end + ".";
        })
        .catch(function () {
          status.textContent = "Could not refresh after batch " + batch.bot_log_id + ".";
        });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
