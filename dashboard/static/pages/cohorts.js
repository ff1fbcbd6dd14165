/* Cohorts: retention heatmap (cohort x month offset, fct_cohort_retention), LTV curves by
   cohort and by first-touch channel (fct_cohort_ltv_by_channel). Cells of a calendar month
   that is not complete (is_observable false) are drawn grey / with open markers: they hold a
   partial month. The month filter picks cohorts; the channel filter the LTV curves (the
   retention mart has no channel: the heatmap always covers every channel). */
(function () {
  "use strict";
  var V = window.Voronka;
  var data = V.data || {};
  var M = data.metrics || {};
  var L = data.labels || {};
  var ALL = "all";
  var retention = data.retention || [];
  var ltv = data.ltv || [];
  var channels = data.channels || [];

  function name(channel) { return V.channelLabel(channel); }
  function isAll(state) { return !state.channel || state.channel === ALL; }
  function label(month) { return month ? month.slice(0, 7) : month; }

  function slot(id, wide) {
    var div = document.createElement("div");
    div.id = id;
    div.className = "vk-block" + (wide ? " vk-wide" : "");
    document.getElementById("content").appendChild(div);
  }

  /* x = month offset; the legend sits below the axis title. */
  function offsetLayout() {
    return {xaxis: {title: {text: L.month_offset}, dtick: 1, rangemode: "tozero"},
      legend: {orientation: "h", y: -0.3}, margin: {b: 70}, height: 400};
  }

  function cohortsIn(state, list) {
    var seen = {};
    list.forEach(function (r) { if (V.inRange(r.cohort_month, state)) { seen[r.cohort_month] = 1; } });
    return Object.keys(seen).sort();
  }

  function maxOffset(list) {
    return list.reduce(function (m, r) { return Math.max(m, r.month_offset); }, 0);
  }

  /* Two heatmap layers on one grid: complete cells coloured by retention, incomplete cells
     grey, so a partial month is never read as a drop. */
  function drawHeatmap(state) {
    var meta = M.retention_rate || {};
    var cohorts = cohortsIn(state, retention);
    var cells = retention.filter(function (r) { return V.inRange(r.cohort_month, state); });
    var offsets = [];
    for (var k = 0; k <= maxOffset(cells); k++) { offsets.push(k); }
    var index = {};
    cells.forEach(function (r) { index[r.cohort_month + "|" + r.month_offset] = r; });
    function grid(observable) {
      var z = [], text = [];
      cohorts.forEach(function (c) {
        var zr = [], tr = [];
        offsets.forEach(function (k) {
          var r = index[c + "|" + k];
          var show = r && r.is_observable === observable;
          zr.push(show ? r.retention_rate : null);
          tr.push(show ? V.fmt(r.retention_rate, "percent") +
            (observable ? "" : " (" + L.incomplete + ")") + "<br>" + L.cohort_size + ": " +
            V.fmt(r.cohort_size, "count") : "");
        });
        z.push(zr); text.push(tr);
      });
      return {z: z, text: text};
    }
    var zmax = cells.reduce(function (m, r) {
      return r.month_offset > 0 && r.is_observable ? Math.max(m, r.retention_rate) : m;
    }, 0) || 1;
    var ys = cohorts.map(label);
    var done = grid(true), open = grid(false);
    var common = {type: "heatmap", x: offsets, y: ys, hoverongaps: false,
      hovertemplate: "%{y} +%{x}: %{text}<extra></extra>"};
    V.chart("coh-heatmap", {
      title: meta.title, definition: meta.definition, unit: meta.unit,
      traces: [
        Object.assign({}, common, {z: done.z, text: done.text, zmin: 0, zmax: zmax,
          colorscale: [[0, "#f7fbff"], [0.5, "#6baed6"], [1, "#08306b"]], name: meta.title,
          colorbar: {tickformat: ".0%"}}),
        Object.assign({}, common, {z: open.z, text: open.text, zmin: 0, zmax: zmax,
          colorscale: [[0, "#d9d9d9"], [1, "#bdbdbd"]], showscale: false,
          name: L.incomplete})
      ],
      layout: {xaxis: {title: {text: L.month_offset}, dtick: 1},
        yaxis: {title: {text: L.cohort_month}, type: "category", autorange: "reversed"},
        height: Math.max(360, 22 * cohorts.length + 120)}
    });
  }

  function drawLtvByCohort(state) {
    var meta = M.ltv_cohort || {};
    var channel = isAll(state) ? ALL : state.channel;
    var cohorts = cohortsIn(state, ltv);
    var traces = cohorts.map(function (c) {
      var pts = ltv.filter(function (r) { return r.cohort_month === c && r.channel === channel; });
      pts.sort(function (a, b) { return a.month_offset - b.month_offset; });
      return {type: "scatter", mode: "lines+markers", name: label(c),
        x: pts.map(function (r) { return r.month_offset; }),
        y: pts.map(function (r) { return r.ltv; }),
        text: pts.map(function (r) {
          return V.fmt(r.ltv, "money") + (r.is_observable ? "" : " (" + L.incomplete + ")");
        }),
        hovertemplate: "+%{x}: %{text}<extra>%{fullData.name}</extra>",
        marker: {symbol: pts.map(function (r) { return r.is_observable ? "circle" : "circle-open"; }),
          size: 6}};
    }).filter(function (t) { return t.x.length > 0; });
    V.chart("coh-ltv-cohort", {
      title: meta.title + (channel === ALL ? "" : " — " + name(channel)),
      definition: meta.definition, unit: meta.unit, traces: traces,
      layout: offsetLayout()
    });
  }

  /* Per channel, at each offset k: the cohorts of the range whose month k is complete,
     cumulative revenue summed / cohort sizes summed (a size-weighted mean of their LTV);
     a point resting on fewer than MIN_COHORTS cohorts is not drawn (one cohort's noise). */
  var MIN_COHORTS = 3;
  function drawLtvByChannel(state) {
    var meta = M.ltv_channel || {};
    var drawn = isAll(state) ? channels.concat([ALL]) : [state.channel, ALL];
    var traces = drawn.map(function (channel) {
      var acc = {};
      ltv.forEach(function (r) {
        if (r.channel !== channel || !r.is_observable || !V.inRange(r.cohort_month, state)) {
          return;
        }
        var a = acc[r.month_offset] || (acc[r.month_offset] = {rev: 0, size: 0, n: 0});
        a.rev += r.cumulative_revenue;
        a.size += r.cohort_size;
        a.n += 1;
      });
      var ks = Object.keys(acc).map(Number).filter(function (k) {
        return acc[k].n >= MIN_COHORTS;
      }).sort(function (a, b) { return a - b; });
      var t = {type: "scatter", mode: "lines+markers", name: name(channel),
        x: ks, y: ks.map(function (k) { return acc[k].size ? acc[k].rev / acc[k].size : null; }),
        text: ks.map(function (k) {
          return V.fmt(acc[k].size ? acc[k].rev / acc[k].size : null, "money") + " (" +
            L.cohorts + ": " + acc[k].n + ", " + L.cohort_size.toLowerCase() + ": " +
            V.fmt(acc[k].size, "count") + ")";
        }),
        hovertemplate: "+%{x}: %{text}<extra>%{fullData.name}</extra>"};
      if (channel === ALL) { t.line = {width: 3, dash: "dot", color: "#333"}; }
      return t;
    }).filter(function (t) { return t.x.length > 0; });
    V.chart("coh-ltv-channel", {
      title: meta.title, definition: meta.definition, unit: meta.unit, traces: traces,
      layout: offsetLayout()
    });
  }

  slot("coh-heatmap", true);
  slot("coh-ltv-cohort");
  slot("coh-ltv-channel");
  V.filters({months: (data.months || []).map(function (m) { return m.month; }),
    channel: channels}, function (state) {
    drawHeatmap(state);
    drawLtvByCohort(state);
    drawLtvByChannel(state);
  });
})();
