/* Sales formula: V = Leads × Cv × AOV × # × M by month (fct_sales_formula_monthly), and a
   waterfall of how much each factor explains of the change in V into the last month of the
   chosen range (the mart's log contributions, turned into money by the payload: effects add
   up to V1 − V0). Incomplete months are marked on every monthly chart. */
(function () {
  "use strict";
  var V = window.Voronka;
  var data = V.data || {};
  var U = data.units || {};
  var months = data.months || [];
  var waterfalls = data.waterfall || [];
  var FACTORS = data.factors || [];

  var isNum = V.isNum, slot = V.slot, note = V.note, marks = V.marks;

  V.labels(data.labels || {});

  var CHARTS = ["value"].concat(FACTORS);
  slot("sf-note", "vk-notice vk-wide");
  slot("sf-waterfall", "vk-wide");
  CHARTS.forEach(function (key) { slot("sf-" + key); });

  function monthlyChart(key, rows) {
    var xs = rows.map(function (r) { return r.month; });
    var ys = rows.map(function (r) { return isNum(r[key]) ? r[key] : null; });
    var flags = rows.map(function (r) { return !!r.month_complete; });
    var texts = rows.map(function (r) {
      var extra = key === "margin" && isNum(r.margin_known_share)
        ? "<br>" + V.t("margin_known_share") + ": " + V.fmt(r.margin_known_share, "percent")
        : "";
      return V.fmt(r[key], U[key]) + extra;
    });
    var m = marks(xs, flags);
    var bar = key === "value" || key === "leads";
    var trace = {
      type: bar ? "bar" : "scatter", x: xs, y: ys, name: V.t(key), text: texts,
      hovertemplate: "%{x|%Y-%m}: %{text}<extra></extra>",
      marker: {opacity: flags.map(function (f) { return f ? 1 : 0.45; })}
    };
    if (!bar) { trace.mode = "lines+markers"; }
    if (bar) { trace.textposition = "none"; }
    V.chart("sf-" + key, {
      title: V.t(key),
      definition: V.t(key + "__def"),
      unit: U[key],
      traces: [trace],
      layout: {shapes: m.shapes, annotations: m.annotations, showlegend: false,
               yaxis: key === "orders_per_customer" ? {tickformat: ".3f"} : {}}
    });
  }

  function waterfallChart(month) {
    var w = null;
    waterfalls.forEach(function (x) { if (x.month <= month) { w = x; } });
    var box = document.getElementById("sf-note");
    if (!w) {
      note(box, V.t("no_change"));
      V.chart("sf-waterfall", {title: V.t("waterfall"), definition: V.t("waterfall__def"),
                               unit: "money", traces: [], layout: {}});
      return;
    }
    note(box, w.month_complete ? "" : V.t("incomplete_note"));
    var x = [V.t("prev_value") + " (" + V.fmtMonth(w.prev_month) + ")"];
    var y = [w.prev_value];
    var measure = ["absolute"];
    var text = [V.fmt(w.prev_value, "money")];
    FACTORS.forEach(function (f) {
      x.push(V.t(f));
      y.push(w.effects[f]);
      measure.push("relative");
      text.push(V.fmt(w.effects[f], "money") + " (" + V.t("log_points") + " " +
                V.fmt(w.contributions[f], "ratio") + ")");
    });
    x.push(V.t("this_value") + " (" + V.fmtMonth(w.month) + ")");
    y.push(w.value);
    measure.push("total");
    text.push(V.fmt(w.value, "money"));
    V.chart("sf-waterfall", {
      title: V.t("waterfall") + " — " + V.fmtMonth(w.month) +
        (w.month_complete ? "" : " (" + V.t("incomplete_period") + ")"),
      definition: V.t("waterfall__def"),
      unit: "money",
      traces: [{type: "waterfall", x: x, y: y, measure: measure, text: text,
                textposition: "outside", cliponaxis: false,
                hovertemplate: "%{x}: %{text}<extra></extra>",
                connector: {line: {color: "#999"}}}],
      layout: {showlegend: false, yaxis: {range: span(w), autorange: false}}
    });
  }

  /* The waterfall's value axis around the running totals (from 0 the factor steps would be
     slivers beside V); the first and last bars stay labelled with their values. */
  function span(w) {
    var run = w.prev_value, lo = run, hi = run;
    FACTORS.forEach(function (f) { run += w.effects[f]; lo = Math.min(lo, run); hi = Math.max(hi, run); });
    lo = Math.min(lo, w.value); hi = Math.max(hi, w.value);
    var pad = Math.max((hi - lo) * 0.6, Math.abs(hi) * 0.02, 1);
    return [Math.max(0, lo - pad), hi + pad];
  }

  function render(state) {
    var rows = months.filter(function (r) { return V.inRange(r.month, state); });
    CHARTS.forEach(function (key) { monthlyChart(key, rows); });
    var last = rows.length ? rows[rows.length - 1].month : (state && state.to) || "";
    waterfallChart(last);
  }

  V.filters({months: months.map(function (r) { return r.month; })}, render);
})();
