/* Predictions: the customer-value model's holdout check (predicted vs actual repeat purchases
   per calibration group), the p_alive distribution and the fitted parameters. A snapshot at
   the fit date (no month axis, no filters). What to show comes from the payload (`show`,
   decided in dashboard/pages/predictions.py); a model that did not fit shows its status
   message instead of the charts, a warehouse without predictions a "no predictions yet" note. */
(function () {
  "use strict";
  var V = window.Voronka;
  var data = V.data;
  if (!data || !data.labels) { return; }  // the core already shows a build error or a missing page
  var L = data.labels;
  var show = data.show || {};
  var fit = data.fit;

  /* A model parameter with four significant digits (r = 0.2430, α = 4.414), grouped and with
     the language's decimal mark; large log-likelihoods keep two decimals. */
  function sig(value) {
    if (!V.isNum(value)) { return "—"; }
    var v = Number(value);
    if (Math.abs(v) >= 1000) { return V.fmt(v, "ratio"); }
    var text = Math.abs(v).toPrecision(4);
    if (text.indexOf("e") >= 0) { text = String(Math.abs(v)); }
    if (V.lang === "ru") { text = text.replace(".", ","); }
    return (v < 0 ? (V.lang === "ru" ? "−" : "-") : "") + text;
  }

  function noteIn(plot, text) {
    if (!plot || !text) { return; }
    plot.parentNode.appendChild(V.el("p", {className: "vk-note", text: text}));
  }

  function statusNotices() {
    if (data.state === "missing") {
      V.notice(L.no_predictions, "vk-missing");
      return;
    }
    if (fit && fit.status !== "ok") {
      var text = fit.status_text + (fit.message ? ". " + L.message + ": " + fit.message : "");
      V.notice(text, "vk-status");
    }
    if (data.stale_note) { V.notice(data.stale_note, "vk-status"); }
  }

  function drawHoldout() {
    var rows = data.holdout || [];
    var groups = rows.map(function (r) { return r.group; });
    var custom = rows.map(function (r) {
      return [V.fmt(r.customers, "count"), V.fmt(r.relative_error, "percent")];
    });
    var hover = L.group_axis + ": %{x}<br>%{y:,.1f}<br>" + L.customers +
      ": %{customdata[0]}<br>" + L.relative_error + ": %{customdata[1]}" +
      "<extra>%{fullData.name}</extra>";
    V.slot("pred-holdout", "vk-block vk-wide");
    V.chart("pred-holdout", {
      title: data.holdout_title, definition: L.holdout_def, unit: "count",
      traces: [
        {type: "bar", name: L.predicted, x: groups, customdata: custom, hovertemplate: hover,
          y: rows.map(function (r) { return r.predicted; })},
        {type: "bar", name: L.actual, x: groups, customdata: custom, hovertemplate: hover,
          y: rows.map(function (r) { return r.actual; })}
      ],
      layout: {barmode: "group", xaxis: {type: "category", title: {text: L.group_axis}},
        yaxis: {title: {text: L.purchases_axis}}}
    });
    var total = {group: L.total, customers: fit.customers, predicted: fit.predicted,
      actual: fit.actual, relative_error: fit.relative_error};
    V.slot("pred-holdout-table", "vk-block");
    V.table("pred-holdout-table", {
      title: L.holdout_table, definition: L.holdout_def, sortable: false,
      columns: [
        {key: "group", label: L.group},
        {key: "customers", label: L.customers, unit: "count"},
        {key: "predicted", label: L.predicted, unit: "count"},
        {key: "actual", label: L.actual, unit: "count"},
        {key: "relative_error", label: L.relative_error, unit: "percent"}
      ],
      rows: rows.concat([total])
    });
  }

  function drawPAlive() {
    var pa = data.p_alive;
    var bins = pa.bins || [];
    var labels = bins.map(function (b) { return b.label; });
    V.slot("pred-p-alive", "vk-block");
    var plot = V.chart("pred-p-alive", {
      title: L.p_alive_title, definition: L.p_alive_def, unit: "count",
      traces: [
        {type: "bar", name: L.repeat_buyers, x: labels,
          y: bins.map(function (b) { return b.repeat; })},
        {type: "bar", name: L.one_time_buyers, x: labels,
          y: bins.map(function (b) { return b.one_time; })}
      ],
      layout: {barmode: "stack", legend: {traceorder: "normal"},
        xaxis: {type: "category", title: {text: L.p_alive_axis}},
        yaxis: {title: {text: L.customers}}}
    });
    noteIn(plot, L.one_time_note);
  }

  function drawParameters() {
    var rows = (data.parameters || []).map(function (p) {
      return {model: p.model, parameter: p.parameter, value: p.value, text: sig(p.value)};
    });
    var facts = [
      ["status", fit.status, fit.status],
      ["holdout_weeks", fit.holdout_weeks, V.fmt(fit.holdout_weeks, "count")],
      ["holdout_error", fit.holdout_error, V.fmt(fit.holdout_error, "percent")],
      ["max_holdout_error", fit.max_holdout_error, V.fmt(fit.max_holdout_error, "percent")],
      ["fit_date", fit.fit_date, V.fmtDate(fit.fit_date)],
      ["model_version", fit.model_version, fit.model_version || "—"]
    ];
    facts.forEach(function (f) {
      rows.push({model: "", parameter: L[f[0]], value: f[1], text: f[2]});
    });
    V.slot("pred-params", "vk-block");
    V.table("pred-params", {
      title: L.params_title, definition: L.params_def, sortable: false,
      columns: [
        {key: "model", label: L.model},
        {key: "parameter", label: L.parameter},
        {key: "value", label: L.value, format: function (v, row) { return row.text; }}
      ],
      rows: rows
    });
  }

  statusNotices();
  if (show.holdout) { drawHoldout(); }
  if (show.p_alive) { drawPAlive(); }
  if (show.parameters) { drawParameters(); }
})();
