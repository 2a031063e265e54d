// The web checkout's one script. The pages work without it; with it:
// the machine page keeps the machine's state up to date, the Pay and Stop buttons are disabled once pressed (a second press
// would open nothing new: each form carries its own idempotency key), and
// the checkout page follows its progress over Server-Sent Events,
// updating the live region, and reloads itself when the checkout changes
// state (the server renders each state's page).
"use strict";
document.documentElement.classList.add("js");
document.addEventListener("submit", function (ev) {
  var b = ev.target.querySelector("button[type=submit]");
  if (!b) return;
  if (b.dataset.sent) { ev.preventDefault(); return; }
  b.dataset.sent = "1";
  setTimeout(function () { b.disabled = true; }, 0); // after the form's data is taken
});
(function () { // the machine's state, live: asked again every few seconds
  var el = document.getElementById("machine-state");
  if (!el || !window.fetch) return;
  function poll() {
    fetch(el.dataset.url, {cache: "no-store"}).then(function (r) { return r.ok ? r.json() : null; }).then(function (s) {
      if (!s) return;
      el.className = "state state-" + s.key;
      el.querySelector(".shape").className = "shape shape-" + s.shape;
      var label = el.querySelector("span:last-child");
      if (label.textContent !== s.label) label.textContent = s.label;
    }).catch(function () {}).then(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 5000);
})();
(function () { // typing another amount chooses it
  var custom = document.getElementById("custom"), radio = document.getElementById("cap-custom");
  if (custom && radio) custom.addEventListener("input", function () { radio.checked = true; });
})();
(function () {
  var box = document.getElementById("checkout");
  if (!box || !window.EventSource) return;
  var state = box.dataset.state;
  var final = ["done", "expired", "failed", "cancelled"];
  if (final.indexOf(state) >= 0) return;
  var es = new EventSource("/m/c/" + encodeURIComponent(box.dataset.id) + "/events");
  function set(id, text) {
    var e = document.getElementById(id);
    if (e && text !== undefined && e.textContent !== text) e.textContent = text;
  }
  es.addEventListener("checkout", function (m) {
    var c;
    try { c = JSON.parse(m.data); } catch (e) { return; }
    if (c.state !== state) { es.close(); location.reload(); return; }
    set("words", c.words);
    set("units", c.units);
    set("spent", c.spent);
  });
})();
