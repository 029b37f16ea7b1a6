// Live parts of the console: an element with data-live="URL" data-every="SECONDS" is fetched
// again every SECONDS and its content replaced by the server's partial (the X-Live header asks
// for it). Nothing else runs here; every page works without this script.
"use strict";
(function () {
  function refresh(element) {
    if (document.hidden) return;
    fetch(element.dataset.live, { headers: { "X-Live": "1" }, credentials: "same-origin" })
      .then(function (response) {
        if (response.redirected || !response.ok) return null;
        return response.text();
      })
      .then(function (html) {
        if (html === null) return;
        element.innerHTML = html;
        element.dataset.refreshed = String(Date.now());
      })
      .catch(function () { /* the next round tries again */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(function (element) {
      var seconds = Math.max(1, Number(element.dataset.every || 5));
      window.setInterval(function () { refresh(element); }, seconds * 1000);
    });
  });
})();
