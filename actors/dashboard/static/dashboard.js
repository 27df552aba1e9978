/* actorq dashboard: the live throughput chart of the overview (uPlot), fed by its htmx
 * refresh. No inline script anywhere: the Content-Security-Policy allows only these files. */
(function () {
  "use strict";
  var chart = null;
  var last = null;
  var data = [[], [], []];

  function sample() {
    var table = document.getElementById("overview-table");
    if (!table) { return; }
    var now = Date.now() / 1000;
    var current = { ok: Number(table.dataset.succeeded), dead: Number(table.dataset.dead) };
    if (last !== null) {
      // A cleanup can lower the totals: a negative step shows as none.
      data[0].push(now);
      data[1].push(Math.max(0, current.ok - last.ok));
      data[2].push(Math.max(0, current.dead - last.dead));
      if (data[0].length > 300) { data.forEach(function (s) { s.shift(); }); }
      if (chart) { chart.setData(data); }
    }
    last = current;
  }

  function start() {
    var el = document.getElementById("throughput-chart");
    if (!el || typeof uPlot === "undefined") { return; }
    chart = new uPlot({
      width: Math.max(320, el.clientWidth || 800),
      height: 220,
      // A rolling window of the last two minutes, whatever the samples so far.
      scales: { x: { time: true, range: function () { var t = Date.now() / 1000; return [t - 120, t]; } } },
      series: [
        {},
        { label: "succeeded", stroke: "#1a7f37", width: 2 },
        { label: "dead", stroke: "#c0362c", width: 2 }
      ],
      axes: [{}, { label: "jobs per refresh" }]
    }, data, el);
    sample();
  }

  document.addEventListener("DOMContentLoaded", start);
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target && event.target.id === "overview-table") { sample(); }
  });
})();
