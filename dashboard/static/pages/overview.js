/* Overview: the seven headline metrics for the last complete month against the month before
 * and the same month a year earlier, each with a sparkline; the month range filter sets the
 * sparklines' window, and the tiles show the newest complete month up to its end. */
(function () {
  "use strict";
  var V = window.Voronka;
  var data = V.data || {};
  var kpis = data.kpis || [];

  V.labels({
    vs_previous: {ru: "к пред. месяцу", en: "vs previous month"},
    vs_year_ago: {ru: "к тому же месяцу год назад", en: "vs same month last year"},
    points: {ru: "п.п.", en: "pp"},
    incomplete_month: {ru: "месяц не завершён", en: "month not complete"},
    revenue_chart: {ru: "Выручка по месяцам", en: "Revenue by month"},
    was: {ru: "было", en: "was"}
  });

  function scaled(kpi, value) {
    return value === null || value === undefined ? null : value * (kpi.scale || 1);
  }

  function pointAt(kpi, month) {
    for (var i = 0; i < kpi.series.length; i++) {
      if (kpi.series[i].month === month) { return kpi.series[i]; }
    }
    return null;
  }

  function shift(month, n) {
    var y = Number(month.slice(0, 4)), m = Number(month.slice(5, 7)) - 1 + n;
    var d = new Date(Date.UTC(y, m, 1));
    return d.toISOString().slice(0, 10);
  }

  /* "+5,2% vs previous month" (or "+3,1 pp" for shares); empty when either side is missing. */
  function change(kpi, now, before, labelKey) {
    var line = V.el("div", {className: "vk-kpi-delta"});
    if (now === null || before === null || now === undefined || before === undefined) {
      line.textContent = "— " + V.t(labelKey);
      return line;
    }
    var text, up;
    if (kpi.unit === "percent") {
      var pp = (scaled(kpi, now) - scaled(kpi, before)) * 100;
      text = (pp > 0 ? "+" : "") + V.fmt(pp / 100, "percent").replace("%", "") + " " + V.t("points");
      up = pp > 0;
    } else if (before === 0) {
      line.textContent = "— " + V.t(labelKey);
      return line;
    } else {
      var rel = now / before - 1;
      text = (rel > 0 ? "+" : "") + V.fmt(rel, "percent");
      up = rel > 0;
    }
    var good = kpi.key === "cac" ? !up : up;
    line.appendChild(V.el("span", {className: now === before ? "" : (good ? "vk-up" : "vk-down"),
                                   text: text}));
    line.appendChild(document.createTextNode(" " + V.t(labelKey) + " (" + V.t("was") + " "));
    line.appendChild(V.el("span", {className: "vk-nowrap", text: V.fmt(scaled(kpi, before), kpi.unit)}));
    line.appendChild(document.createTextNode(")"));
    return line;
  }

  function spark(node, kpi, state) {
    var points = kpi.series.filter(function (p) { return V.inRange(p.month, state); });
    var months = points.map(function (p) { return p.month; });
    var trace = {
      type: "scatter", mode: "lines+markers", x: months,
      y: points.map(function (p) { return scaled(kpi, p.value); }),
      line: {width: 2, color: "#2f6fde"}, marker: {size: 4}, name: kpi.title,
      hovertemplate: "%{x|%b %Y}: %{y:" + ({money: ",.0f", percent: ".1%", count: ",.2~f"}[kpi.unit] || ",.2f") +
        "}" + (kpi.unit === "money" ? "\u00a0" + V.unitLabel("money") : "") + "<extra></extra>"
    };
    var shapes = V.incompleteShapes(months, points.map(function (p) { return p.complete; }))
      .map(function (s) { s.label = undefined; s.showlegend = false; return s; });
    Plotly.react(node, [trace], {
      height: 60, margin: {l: 0, r: 0, t: 2, b: 2}, showlegend: false, shapes: shapes,
      separators: V.lang === "ru" ? ",\u2009" : ".,",
      xaxis: {visible: false, type: "date"}, yaxis: {visible: false},
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", hovermode: "closest"
    }, {displayModeBar: false, responsive: true, locale: V.lang});
  }

  function tile(kpi, month, state) {
    var point = pointAt(kpi, month);
    var value = point ? point.value : null;
    var previous = pointAt(kpi, shift(month, -1));
    var yearAgo = pointAt(kpi, shift(month, -12));
    var unitText = V.unitLabel(kpi.unit);
    var head = V.el("h3", {className: "vk-card-title", title: kpi.definition,
                           "data-definition": kpi.definition}, [
      V.el("span", {className: "vk-metric", text: kpi.title}),
      unitText && kpi.unit !== "count" ? V.el("span", {className: "vk-unit", text: ", " + unitText}) : null,
      V.el("span", {className: "vk-info", "aria-hidden": "true", text: "i"})
    ]);
    var sparkNode = V.el("div", {className: "vk-spark"});
    var card = V.el("section", {className: "vk-card vk-kpi", "data-kpi": kpi.key}, [
      head,
      V.el("div", {className: "vk-kpi-value", "data-value": value === null ? "" : String(value),
                   text: V.fmt(scaled(kpi, value), kpi.unit)}),
      V.el("div", {className: "vk-kpi-month",
                   text: V.fmtMonth(month) + (point && !point.complete ? " · " + V.t("incomplete_month") : "")}),
      V.el("div", {className: "vk-kpi-compare"}, [
        change(kpi, value, previous ? previous.value : null, "vs_previous"),
        change(kpi, value, yearAgo ? yearAgo.value : null, "vs_year_ago")
      ]),
      sparkNode
    ]);
    return {card: card, spark: sparkNode};
  }

  /* The newest complete month up to the range's end (the tiles compare complete months;
   * the sparklines still show the incomplete one, marked). */
  function referenceMonth(state) {
    var revenue = kpis.filter(function (k) { return k.key === "revenue"; })[0];
    var best = null;
    (revenue ? revenue.series : []).forEach(function (p) {
      if (p.complete && V.inRange(p.month, {from: null, to: state.to})) { best = p.month; }
    });
    return best || state.to || data.last_complete_month;
  }

  function render(state) {
    var grid = V.container("overview-kpis");
    grid.className = "vk-kpis";
    grid.innerHTML = "";
    var month = referenceMonth(state);
    if (!kpis.length || !month) {
      grid.appendChild(V.el("p", {className: "vk-notice", text: V.t("no_data")}));
      return;
    }
    grid.setAttribute("data-month", month);
    var sparks = kpis.map(function (kpi) {
      var made = tile(kpi, month, state);
      grid.appendChild(made.card);
      return made;
    });
    sparks.forEach(function (made, i) { spark(made.spark, kpis[i], state); });
    var revenue = kpis.filter(function (k) { return k.key === "revenue"; })[0];
    if (revenue) {
      var points = revenue.series.filter(function (p) { return V.inRange(p.month, state); });
      var months = points.map(function (p) { return p.month; });
      var box = V.container("overview-revenue");
      box.className = "vk-block vk-wide";
      V.chart("overview-revenue", {
        title: V.t("revenue_chart"), definition: revenue.definition, unit: "money",
        traces: [{type: "bar", x: months, y: points.map(function (p) { return p.value; }),
                  name: revenue.title,
                  marker: {color: "#2f6fde", pattern: V.incompletePattern(
                    points.map(function (p) { return p.complete; }))}}],
        layout: {shapes: V.incompleteShapes(months, points.map(function (p) { return p.complete; })),
                 showlegend: true}
      });
    }
  }

  V.filters({months: data.months || true}, render);
})();
