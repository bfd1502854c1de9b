// The dashboard's only script: draws the charts (inline SVG), refreshes a page's fragments
// from /dashboard/data.json without a reload, and makes table rows clickable.
// Every page is complete without it.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var REFRESH_MS = 10000;
  var charts = {};  // name -> series ({bucket_s, buckets: [{start, requests, errors, p50_ms, p95_ms}]})

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function clock(epoch, withDate) {
    var d = new Date(epoch * 1000);
    var time = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
    return withDate ? pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " + time : time;
  }

  function ms(v) {
    if (v === null || v === undefined) return "—";
    return v < 1000 ? Math.round(v) + " ms" : (v / 1000).toFixed(2) + " s";
  }

  function niceMax(v) {
    if (v <= 4) return 4;
    var step = Math.pow(10, Math.floor(Math.log10(v)));
    // Even multiples, so the middle gridline is a whole number too.
    var m = [1, 2, 4, 6, 8, 10].find(function (f) { return f * step >= v; });
    return m * step;
  }

  // A stacked bar chart: successful requests, with errors on top, one bar per bucket.
  function drawChart(container, series) {
    var width = container.clientWidth, height = container.clientHeight;
    if (!width || !height) return;
    var left = 34, right = 6, top = 8, bottom = 20;
    var buckets = series.buckets;
    var max = niceMax(Math.max.apply(null, buckets.map(function (b) { return b.requests; }).concat([0])));
    var plotW = width - left - right, plotH = height - top - bottom;
    var slot = plotW / Math.max(1, buckets.length);
    var gap = slot > 6 ? Math.min(2, slot * 0.2) : 0;
    var svg = el("svg", {viewBox: "0 0 " + width + " " + height, width: width, height: height, "class": "chart-svg"});
    [0, 0.5, 1].forEach(function (f) {
      var y = top + plotH * (1 - f);
      el("line", {x1: left, x2: width - right, y1: y, y2: y, "class": "gridline"}, svg);
      el("text", {x: left - 6, y: y + 4, "text-anchor": "end", "class": "axis"}, svg).textContent = String(Math.round(max * f));
    });
    var withDate = series.bucket_s >= 3600;
    buckets.forEach(function (b, i) {
      var x = left + i * slot + gap / 2, w = Math.max(1, slot - gap);
      var ok = b.requests - b.errors;
      var hOk = plotH * ok / max, hErr = plotH * b.errors / max;
      var base = top + plotH;
      if (ok > 0) el("rect", {x: x, y: base - hOk, width: w, height: hOk, "class": "bar"}, svg);
      if (b.errors > 0) el("rect", {x: x, y: base - hOk - hErr, width: w, height: hErr, "class": "bar-error"}, svg);
      var hit = el("rect", {x: left + i * slot, y: top, width: slot, height: plotH, "class": "hit"}, svg);
      el("title", {}, hit).textContent = clock(b.start, withDate) + " UTC: " + b.requests + " requests, " +
        b.errors + " errors" + (b.requests ? ", p50 " + ms(b.p50_ms) + ", p95 " + ms(b.p95_ms) : "");
    });
    var ticks = [0, Math.floor((buckets.length - 1) / 2), buckets.length - 1];
    ticks.forEach(function (i, n) {
      if (!buckets[i]) return;
      var anchor = n === 0 ? "start" : n === 2 ? "end" : "middle";
      var x = n === 0 ? left : n === 2 ? width - right : left + (i + 0.5) * slot;
      el("text", {x: x, y: height - 4, "text-anchor": anchor, "class": "axis"}, svg).textContent = clock(buckets[i].start, withDate && n === 0);
    });
    container.replaceChildren(svg);
  }

  function drawCharts(data) {
    document.querySelectorAll("[data-chart]").forEach(function (container) {
      var series = data[container.getAttribute("data-chart")];
      if (!series) return;
      charts[container.getAttribute("data-chart")] = series;
      drawChart(container, series);
      var legend = container.nextElementSibling;
      if (!legend || !legend.classList.contains("legend")) {
        legend = document.createElement("div");
        legend.className = "legend";
        legend.innerHTML = "<span>requests</span><span class=\"err\">errors</span>";
        container.after(legend);
      }
    });
  }

  function redrawCharts() {
    document.querySelectorAll("[data-chart]").forEach(function (container) {
      var series = charts[container.getAttribute("data-chart")];
      if (series) drawChart(container, series);
    });
  }

  // The fragments come from the server's own templates (autoescaped), as in the first page load.
  function applyFragments(html) {
    document.querySelectorAll("[data-fragment]").forEach(function (node) {
      var name = node.getAttribute("data-fragment");
      if (Object.prototype.hasOwnProperty.call(html, name)) node.innerHTML = html[name];
    });
  }

  function refresh(url) {
    if (document.hidden) return;
    fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (payload) {
        if (!payload) return;
        applyFragments(payload.html);
        if (payload.page === "overview") drawCharts(payload.data);
        document.body.classList.remove("stale");
      })
      .catch(function () { document.body.classList.add("stale"); });
  }

  function clickableRows() {
    document.addEventListener("click", function (event) {
      if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey) return;
      if (event.target.closest("a, button, input, select, label")) return;
      var row = event.target.closest("tr[data-href]");
      if (row && !window.getSelection().toString()) window.location.href = row.getAttribute("data-href");
    });
  }

  // Filters apply on change; empty ones stay out of the URL.
  function filterForms() {
    document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
      form.addEventListener("submit", function () {
        form.querySelectorAll("select").forEach(function (s) { if (!s.value) s.disabled = true; });
      });
      form.addEventListener("change", function () { form.requestSubmit(); });
    });
    // Back/forward may restore the page with the empty selects still disabled.
    window.addEventListener("pageshow", function () {
      document.querySelectorAll("form[data-autosubmit] select").forEach(function (s) { s.disabled = false; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var initial = document.getElementById("dashboard-data");
    if (initial) drawCharts(JSON.parse(initial.textContent));
    var pending = false;
    window.addEventListener("resize", function () {
      if (pending) return;
      pending = true;
      window.requestAnimationFrame(function () { pending = false; redrawCharts(); });
    });
    clickableRows();
    filterForms();
    var url = document.body.getAttribute("data-refresh");
    if (url) {
      document.querySelectorAll(".live").forEach(function (n) { n.hidden = false; });
      window.setInterval(function () { refresh(url); }, REFRESH_MS);
      document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(url); });
    }
  });
})();
