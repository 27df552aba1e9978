/* actorq dashboard: the overview's per-minute history chart (uPlot), redrawn from the data the
 * htmx refresh brings (data-history on #overview-table: minutes, succeeded, failed, dead), and
 * the correctness page's recovery-time chart (data-recovery: minutes, p50, p99 in seconds).
 * No inline script anywhere: the Content-Security-Policy allows only these files. */
(function () {
  "use strict";
  var chart = null;

  function history() {
    var table = document.getElementById("overview-table");
    if (!table || !table.dataset.history) { return null; }
    try { return JSON.parse(table.dataset.history); } catch (e) { return null; }
  }

  function start() {
    var el = document.getElementById("throughput-chart");
    var data = history();
    if (!el || !data || typeof uPlot === "undefined") { return; }
    chart = new uPlot({
      width: Math.max(320, el.clientWidth || 800),
      height: 220,
      series: [
        {},
        { label: "succeeded", stroke: "#1a7f37", width: 2 },
        { label: "failed (retried)", stroke: "#9a6700", width: 2 },
        { label: "dead", stroke: "#c0362c", width: 2 }
      ],
      axes: [{}, { label: "per minute" }]
    }, data, el);
  }

  function recovery() {
    var el = document.getElementById("recovery-chart");
    if (!el || !el.dataset.recovery || typeof uPlot === "undefined") { return; }
    var data;
    try { data = JSON.parse(el.dataset.recovery); } catch (e) { return; }
    new uPlot({
      width: Math.max(320, el.clientWidth || 800),
      height: 220,
      spanGaps: true,
      series: [
        {},
        { label: "recovery p50", stroke: "#1f6feb", width: 2 },
        { label: "recovery p99", stroke: "#c0362c", width: 2 }
      ],
      axes: [{}, { label: "seconds" }]
    }, data, el);
  }

  document.addEventListener("DOMContentLoaded", start);
  document.addEventListener("DOMContentLoaded", recovery);
  document.addEventListener("htmx:afterSettle", function (event) {
    if (chart && event.target && event.target.id === "overview-table") {
      var data = history();
      if (data) { chart.setData(data); }
    }
  });
})();
