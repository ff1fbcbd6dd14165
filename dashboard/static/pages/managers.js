/* Managers: leads, won, lost, win rate, revenue, AOV and sales cycle by manager and month
   (fct_manager_performance_monthly; month = the leads' creation month). The table sums the
   chosen months and recomputes win rate and AOV from the sums (the mart's own formulas); the
   median cycle needs one month (medians do not add up). The monthly charts draw the mart's
   rows as they are, incomplete months marked. */
(function () {
  "use strict";
  var V = window.Voronka;
  var data = V.data || {};
  var U = data.units || {};
  var ALL = "all";

  var isNum = V.isNum, ratio = V.ratio, slot = V.slot, note = V.note, marks = V.marks;

  V.labels(data.labels || {});

  var managers = data.managers || [];
  var rows = data.rows || [];
  var months = data.months || [];
  var monthList = months.map(function (m) { return m.month; });
  var complete = {};
  months.forEach(function (m) { complete[m.month] = !!m.month_complete; });
  var labelOf = {};
  managers.forEach(function (m) { labelOf[m.key] = m.label; });

  var CHARTS = ["leads_assigned", "leads_won", "leads_lost", "win_rate", "revenue", "aov",
                "median_sales_cycle_days"];

  slot("mg-table", "vk-wide");
  slot("mg-note", "vk-notice vk-wide");
  CHARTS.forEach(function (k) { slot("mg-" + k); });

  function selected(state) {
    var manager = state.manager && state.manager !== ALL ? state.manager : null;
    return rows.filter(function (r) {
      return V.inRange(r.month, state) && (manager === null || r.manager === manager);
    });
  }

  /* One row per manager over the chosen months: sums, and ratios from the sums. */
  function summary(list, single) {
    var by = {};
    list.forEach(function (r) {
      var s = by[r.manager] = by[r.manager] || {
        manager: labelOf[r.manager] || r.manager, leads_assigned: 0, leads_open: 0,
        leads_won: 0, leads_lost: 0, revenue: 0, revenue_closed_in_month: 0,
        median_sales_cycle_days: null
      };
      ["leads_assigned", "leads_open", "leads_won", "leads_lost", "revenue",
       "revenue_closed_in_month"].forEach(function (k) { s[k] += isNum(r[k]) ? r[k] : 0; });
      if (single) { s.median_sales_cycle_days = r.median_sales_cycle_days; }
    });
    return Object.keys(by).map(function (k) {
      var s = by[k];
      s.win_rate = ratio(s.leads_won, s.leads_assigned);
      s.aov = ratio(s.revenue, s.leads_won);
      return s;
    });
  }

  function chartFor(key, list, ms) {
    var byManager = {};
    list.forEach(function (r) { (byManager[r.manager] = byManager[r.manager] || {})[r.month] = r; });
    if (ms.length === 1) { return barFor(key, list, ms[0]); }
    var m = marks(ms, ms.map(function (x) { return complete[x]; }));
    var traces = Object.keys(byManager).sort(function (a, b) {
      return String(labelOf[a]).localeCompare(String(labelOf[b]));
    }).map(function (mk) {
      var ys = ms.map(function (x) {
        var r = byManager[mk][x];
        return r && isNum(r[key]) ? r[key] : null;
      });
      return {type: "scatter", mode: "lines+markers", name: labelOf[mk] || mk, x: ms, y: ys,
              text: ys.map(function (y) { return V.fmt(y, U[key]); }),
              hovertemplate: "%{text}<extra>%{fullData.name}</extra>", connectgaps: false};
    });
    V.chart("mg-" + key, {
      title: V.t(key), definition: V.t(key + "__def"), unit: U[key], traces: traces,
      layout: {shapes: m.shapes, annotations: m.annotations, showlegend: true}
    });
  }

  /* One month: a bar per manager (a line through one point says nothing). */
  function barFor(key, list, month) {
    var sorted = list.slice().sort(function (a, b) {
      return String(labelOf[a.manager]).localeCompare(String(labelOf[b.manager]));
    });
    var ys = sorted.map(function (r) { return isNum(r[key]) ? r[key] : null; });
    V.chart("mg-" + key, {
      title: V.t(key) + " — " + V.fmtMonth(month) +
        (complete[month] ? "" : " (" + V.t("incomplete_period") + ")"),
      definition: V.t(key + "__def"), unit: U[key],
      traces: [{type: "bar", x: sorted.map(function (r) { return labelOf[r.manager] || r.manager; }),
                y: ys, text: ys.map(function (y) { return V.fmt(y, U[key]); }),
                textposition: "none", hovertemplate: "%{x}: %{text}<extra></extra>",
                marker: {opacity: complete[month] ? 1 : 0.5}}],
      layout: {showlegend: false}
    });
  }

  function render(state) {
    var list = selected(state);
    var ms = monthList.filter(function (x) { return V.inRange(x, state); });
    var single = ms.length === 1;
    var incomplete = ms.some(function (x) { return !complete[x]; });
    note(document.getElementById("mg-note"), incomplete ? V.t("incomplete_note") : "");
    var col = function (key) {
      return {key: key, label: V.t(key), unit: U[key], definition: V.t(key + "__def")};
    };
    V.table("mg-table", {
      title: V.t("summary") + (incomplete ? " *" : ""),
      definition: V.t("summary__def"),
      columns: [{key: "manager", label: V.t("manager")}, col("leads_assigned"), col("leads_won"),
                col("leads_lost"), col("leads_open"), col("win_rate"), col("revenue"), col("aov"),
                col("median_sales_cycle_days"), col("revenue_closed_in_month")],
      rows: summary(list, single),
      sortable: true
    });
    CHARTS.forEach(function (key) { chartFor(key, list, ms); });
  }

  V.filters({
    months: monthList,
    manager: managers.map(function (m) { return {value: m.key, label: m.label}; })
  }, render);
})();
