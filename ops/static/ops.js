// Refreshes the handlers table from stats.json every data-refresh seconds,
// and computes each handler's throughput from its handled count. Values go
// in with textContent only: nothing from the server is parsed as HTML.
(function () {
  "use strict";
  var table = document.getElementById("handlers");
  if (!table) { return; }
  var every = (parseInt(document.body.dataset.refresh, 10) || 5) * 1000;
  var last = {};
  function show(v) { return v === -1 ? "?" : String(v); }
  function tick() {
    fetch("stats.json", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        var now = Date.parse(s.at);
        s.handlers.forEach(function (h) {
          var row = table.querySelector('tr[data-handler="' + CSS.escape(h.handler) + '"]');
          if (!row) { return; }
          var set = function (k, v) { var c = row.querySelector('[data-k="' + k + '"]'); if (c) { c.textContent = v; } };
          set("backlog", show(h.backlog));
          set("in_flight", h.in_flight);
          set("handled", h.handled);
          set("failed_attempts", h.failed_attempts);
          set("poisoned", h.poisoned);
          set("p50", h.p50);
          set("p99", h.p99);
          set("last_error", h.last_error ? h.last_error + " (" + h.last_error_at + ")" : "");
          var prev = last[h.handler];
          if (prev && now > prev.at) {
            set("rate", ((h.handled - prev.handled) * 1000 / (now - prev.at)).toFixed(1));
            row.classList.toggle("changed", h.handled !== prev.handled);
          }
          last[h.handler] = { at: now, handled: h.handled };
        });
      })
      .catch(function () { /* the next tick tries again */ });
  }
  tick();
  setInterval(tick, every);
})();
