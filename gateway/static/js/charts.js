/* The pages' charts, drawn with Chart.js (served from /static/vendor, scripts/fetch_assets.py).
 *
 * A chart is a <canvas data-chart="rankings" data-source="ID"> whose figures are in
 * <script type="application/json" id="ID"> ({title, labels, units, values}); the table beside it holds
 * the same figures, so the page reads without JavaScript (and the CSP allows no inline script).
 * Canvas text does not make the browser fetch a web font's unicode-range subsets, so the glyphs the
 * labels need are loaded first (document.fonts.load), then the chart is drawn: CJK names in Noto Sans SC.
 * When done, the canvas says data-drawn="done". Content htmx swaps in is scanned as well.
 */
(function () {
  "use strict";

  var FONT = '"Noto Sans SC", "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif';  // app.css --font
  var TEXT = "#1a1a1a";
  var BAR = "#1d5fa6";
  var GRID = "#d0d7de";

  function figures(canvas) {
    var block = document.getElementById(canvas.getAttribute("data-source") || "");
    if (!block) {
      return null;
    }
    try {
      return JSON.parse(block.textContent || "null");
    } catch (e) {
      return null;
    }
  }

  function glyphs(data) {
    var text = (data.labels || []).join("") + (data.title || "") + (data.score || "") + (data.rank || "") + "0123456789.-";
    if (!document.fonts || !document.fonts.load) {
      return Promise.resolve();
    }
    return Promise.all([
      document.fonts.load('400 14px "Noto Sans SC"', text),
      document.fonts.load('700 14px "Noto Sans SC"', text)
    ]).catch(function () { return null; });
  }

  function rankings(canvas, data) {
    var values = data.values.map(Number);
    var box = canvas.parentElement;
    if (box) {
      box.style.height = Math.max(160, 34 * values.length + 70) + "px";
    }
    return new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [{ label: data.title, data: values, backgroundColor: BAR, borderRadius: 2, maxBarThickness: 26 }]
      },
      options: {
        indexAxis: "y",
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              title: function (items) {
                var i = items[0].dataIndex;
                return data.labels[i] + (data.units ? " · " + data.units[i] : "");
              },
              label: function (item) { return data.title + ": " + data.values[item.dataIndex]; }
            }
          }
        },
        scales: {
          x: {
            beginAtZero: true,
            title: { display: true, text: data.title, color: TEXT },
            ticks: { color: TEXT },
            grid: { color: GRID }
          },
          y: { ticks: { color: TEXT, autoSkip: false }, grid: { display: false } }
        }
      }
    });
  }

  /* A unit over the cycles (the public site): {score, rank, labels, scores, ranks, of}; score on the
   * left axis, rank on the right one, reversed (1 on top, ``of``, the units ranked, at the bottom). */
  function trend(canvas, data) {
    return new window.Chart(canvas, {
      type: "line",
      data: {
        labels: data.labels,
        datasets: [
          { label: data.score, data: data.scores.map(Number), borderColor: BAR, backgroundColor: BAR, yAxisID: "y" },
          { label: data.rank, data: data.ranks.map(Number), borderColor: "#8a5a00", backgroundColor: "#8a5a00",
            borderDash: [6, 4], yAxisID: "rank" }
        ]
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        scales: {
          y: { position: "left", title: { display: true, text: data.score, color: TEXT }, ticks: { color: TEXT },
               grid: { color: GRID } },
          rank: { position: "right", reverse: true, min: 1, max: data.of || undefined, title: { display: true, text: data.rank, color: TEXT },
                  ticks: { color: TEXT, precision: 0 }, grid: { display: false } },
          x: { ticks: { color: TEXT }, grid: { display: false } }
        }
      }
    });
  }

  var KINDS = { rankings: rankings, trend: trend };

  function draw(canvas) {
    var kind = KINDS[canvas.getAttribute("data-chart")];
    var data = figures(canvas);
    if (!kind || !data || canvas.hasAttribute("data-drawn") || typeof window.Chart === "undefined") {
      return;
    }
    canvas.setAttribute("data-drawn", "pending");
    glyphs(data).then(function () {
      var figure = canvas.closest("figure");
      if (figure) {
        figure.hidden = false;  // hidden until drawn: without script the table stands alone
      }
      kind(canvas, data);
      canvas.setAttribute("data-drawn", "done");
    });
  }

  function scan(root) {
    var found = (root || document).querySelectorAll("canvas[data-chart]");
    for (var i = 0; i < found.length; i++) {
      draw(found[i]);
    }
  }

  function start() {
    if (typeof window.Chart !== "undefined") {
      window.Chart.defaults.font.family = window.getComputedStyle(document.body).fontFamily || FONT;
      window.Chart.defaults.font.size = 14;
      window.Chart.defaults.color = TEXT;
    }
    scan(document);
    document.body.addEventListener("htmx:load", function (event) { scan(event.target); });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
