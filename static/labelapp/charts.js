// Draw every Plotly chart on the page (and in htmx-swapped fragments) from its JSON spec.
// plotly.min.js comes from Plotly's Python package through our static files, never from a CDN.
(function () {
  "use strict";
  function draw(root) {
    if (typeof Plotly === "undefined") return;
    root.querySelectorAll(".plotly-chart").forEach(function (el) {
      var source = document.getElementById(el.dataset.spec);
      if (!source) return;
      var spec = JSON.parse(source.textContent);
      var layout = Object.assign({}, spec.layout || {}, { autosize: true });
      Plotly.react(el, spec.data || [], layout, { responsive: true, displaylogo: false });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  // After an htmx swap (the training run page polls) the new fragment holds fresh chart elements.
  document.addEventListener("htmx:afterSettle", function () { draw(document); });
})();
