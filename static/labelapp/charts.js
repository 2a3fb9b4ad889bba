// Draw every Plotly chart on the page (and in htmx-swapped fragments) from its JSON spec.
// plotly.min.js comes from Plotly's Python package through our static files, never from a CDN.
(function () {
  "use strict";
  // No "Share chart..." button: plotly.js 4 shows one by default (showSendToCloud), which uploads the
  // chart, rater names and figures included, to Plotly's cloud; and no server to send anything to.
  var CONFIG = {
    responsive: true, displaylogo: false, showSendToCloud: false, plotlyServerURL: "",
    modeBarButtonsToRemove: ["sendDataToCloud"]
  };
  function draw(root) {
    if (typeof Plotly === "undefined") return;
    root.querySelectorAll(".plotly-chart").forEach(function (el) {
      var source = document.getElementById(el.dataset.spec);
      if (!source) return;
      var spec = JSON.parse(source.textContent);
      var layout = Object.assign({}, spec.layout || {}, { autosize: true });
      if (el.clientWidth < 560) narrow(layout, el.clientWidth);
      Plotly.react(el, spec.data || [], layout, CONFIG);
      dataTable(el, spec);
    });
  }
  // The chart's numbers as a table under it, folded ("Data of this chart"): a screen reader reads a
  // chart as one picture with its title, and nobody could read the values off it exactly. Built from
  // the same spec, with textContent only (a name is never markup). A histogram's raw values are many:
  // it says how many instead.
  var MAX_ROWS = 300;
  function plain(text) { return String(text == null ? "" : text).replace(/<[^>]*>/g, " ").trim(); }
  function cell(row, text, header) {
    var c = document.createElement(header ? "th" : "td");
    c.textContent = text;
    row.appendChild(c);
  }
  function shown(v) {
    if (typeof v === "number" && isFinite(v)) return String(Math.round(v * 1000) / 1000);
    return v == null ? "" : plain(v);
  }
  function axisTitle(axis, fallback) { return plain(axis && axis.title && (axis.title.text || axis.title)) || fallback; }
  function dataTable(el, spec) {
    var old = el.nextElementSibling;
    if (old && old.classList.contains("chart-data")) old.remove();
    var layout = spec.layout || {};
    var details = document.createElement("details");
    details.className = "chart-data";
    var summary = document.createElement("summary");
    summary.textContent = "Data of this chart" + (layout.title ? ": " + plain(layout.title.text || layout.title) : "");
    details.appendChild(summary);
    var xName = axisTitle(layout.xaxis, "x"), yName = axisTitle(layout.yaxis, "y");
    (spec.data || []).forEach(function (trace, i) {
      var name = plain(trace.name) || "series " + (i + 1);
      if (trace.type === "histogram" || !trace.y) {
        var p = document.createElement("p");
        p.textContent = name + ": " + ((trace.x || []).length) + " values (a histogram).";
        details.appendChild(p);
        return;
      }
      var table = document.createElement("table");
      table.className = "figures";
      var caption = document.createElement("caption");
      caption.textContent = name;
      table.appendChild(caption);
      var head = document.createElement("tr");
      var errors = trace.error_y && trace.error_y.array;
      cell(head, xName, true); cell(head, yName, true);
      if (errors) cell(head, "\u00b1 (interval)", true);
      table.appendChild(head);
      var n = Math.min(trace.y.length, MAX_ROWS);
      for (var k = 0; k < n; k++) {
        var row = document.createElement("tr");
        cell(row, shown(trace.x ? trace.x[k] : k + 1)); cell(row, shown(trace.y[k]));
        if (errors) cell(row, shown(errors[k]));
        table.appendChild(row);
      }
      details.appendChild(table);
      if (trace.y.length > n) {
        var more = document.createElement("p");
        more.textContent = "The first " + n + " of " + trace.y.length + " points.";
        details.appendChild(more);
      }
    });
    el.insertAdjacentElement("afterend", details);
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
