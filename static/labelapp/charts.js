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
      if (el.clientWidth < 560) narrow(layout, el.clientWidth);
      Plotly.react(el, spec.data || [], layout, { responsive: true, displaylogo: false });
    });
  }
  // A phone-width chart: the legend goes under the plot (on the right it left the plot 20 px wide)
  // with the height to hold it, and a title longer than the width is broken into lines (Plotly
  // never wraps one: both ends were cut off).
  function narrow(layout, width) {
    var perLine = Math.max(20, Math.floor(width / 8));
    if (layout.legend && layout.legend.orientation === "v") {
      layout.legend = { orientation: "h", yanchor: "top", y: -0.3, xanchor: "left", x: 0 };
      layout.margin = Object.assign({}, layout.margin, { r: 10, b: 110 });
      layout.height = Math.max(layout.height || 380, 620);
    }
    var title = layout.title && layout.title.text;
    if (title && title.length > perLine) {
      var lines = [], line = "";
      title.split(" ").forEach(function (word) {
        if (line && (line + " " + word).length > perLine) { lines.push(line); line = word; }
        else line = line ? line + " " + word : word;
      });
      lines.push(line);
      layout.title = Object.assign({}, layout.title, { text: lines.join("<br>"), font: { size: 14 } });
      layout.margin = Object.assign({}, layout.margin, { t: 30 + 18 * lines.length });
    }
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  // After an htmx swap (the training run page polls) the new fragment holds fresh chart elements.
  document.addEventListener("htmx:afterSettle", function () { draw(document); });
})();
