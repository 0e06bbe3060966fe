// The overview's chart: events per minute over the last hour, one line per outcome (uPlot, served by the console).
"use strict";
(function () {
  var COLORS = { routed: "#1f7a3a", unroutable: "#b36b00", dead_lettered: "#b3261e", duplicate: "#5b5bd6", pending: "#0b6e99" };

  function draw() {
    var holder = document.getElementById("chart");
    var source = document.getElementById("chart-data");
    if (holder === null || source === null || typeof uPlot === "undefined") return;
    var data = JSON.parse(source.textContent || "{}");
    var minutes = data.minutes || [];
    var outcomes = data.outcomes || [];
    var columns = [minutes.map(function (m) { return m.minute; })];
    var series = [{ label: "minute (UTC)" }];
    var points = 0;
    outcomes.forEach(function (outcome) {
      columns.push(minutes.map(function (m) {
        if (m.counts[outcome] > 0) points += 1;
        return m.counts[outcome];
      }));
      series.push({
        label: outcome.replace("_", " "),
        stroke: COLORS[outcome] || "#444",
        width: 2,
        points: { show: true, size: 5 }
      });
    });
    var width = function () { return Math.max(280, holder.clientWidth); };
    var chart = new uPlot({
      width: width(),
      height: 260,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      scales: { x: { time: true } },
      axes: [{}, { label: "events / min" }],
      series: series
    }, columns, holder);
    // The number of (minute, outcome) points with traffic, for people reading the page's source and for tests.
    holder.setAttribute("data-points", String(points));
    holder.setAttribute("data-ready", "true");
    window.addEventListener("resize", function () { chart.setSize({ width: width(), height: 260 }); });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
