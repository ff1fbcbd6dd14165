/* Funnel, per pipeline: leads reached and conversion by stage, drop-off by stage and loss
   reason, median and p90 time in stage, the sales cycle, and win rate by lead month; filtered
   by channel, manager and lead month.
   Figures are the marts' slices (fct_funnel_stage_slices, fct_sales_cycle: one row per
   channel × manager × lead-month combination; fct_funnel_loss_reasons: additive). One month or
   the whole period reads one slice row as is; a range of months sums the month slices' counts
   (exact) and leaves medians / p90 empty, because percentiles do not add up. */
(function () {
  "use strict";
  var V = window.Voronka;
  var data = V.data || {};
  var U = data.units || {};
  var ALL = "all";
  var SIDE_LEGEND = {orientation: "v", x: 1.02, y: 1, xanchor: "left"};

  V.labels(data.labels || {});

  var pipelines = data.pipelines || [];
  var managers = data.managers || [];
  var months = data.months || [];
  var monthList = months.map(function (m) { return m.month; });
  var complete = {};
  months.forEach(function (m) { complete[m.month] = !!m.month_complete; });

  /* {columns, rows: [[...]]} -> records, pipeline / manager indexes -> their keys. */
  function expand(table) {
    var cols = (table && table.columns) || [];
    return ((table && table.rows) || []).map(function (row) {
      var r = {};
      cols.forEach(function (c, i) { r[c] = row[i]; });
      if (r.pipeline !== null && r.pipeline !== undefined) { r.pipeline = pipelines[r.pipeline].key; }
      if (r.manager !== null && r.manager !== undefined) { r.manager = managers[r.manager].key; }
      return r;
    });
  }

  var slices = expand(data.slices);
  var loss = expand(data.loss);
  var cycle = expand(data.cycle);
  var stagesOf = {};
  (data.stages || []).forEach(function (s) {
    (stagesOf[s.pipeline] = stagesOf[s.pipeline] || []).push(s);
  });

  var isNum = V.isNum, ratio = V.ratio, note = V.note, marks = V.marks;
  function slot(parent, id, cls) { return V.slot(id, cls, parent); }
  function chosen(value) { return value && value !== ALL ? value : null; }

  var content = document.getElementById("content");
  slot(content, "fn-note", "vk-notice vk-wide");
  slot(content, "fn-summary").className = "vk-wide";
  var sections = pipelines.map(function (p, i) {
    var sec = slot(content, "fn-p" + i, "vk-wide");
    sec.style.display = "grid";
    sec.style.gridTemplateColumns = "repeat(auto-fit, minmax(520px, 1fr))";
    sec.style.gap = "16px";
    var h = document.createElement("h2");
    h.textContent = p.label;
    h.style.gridColumn = "1 / -1";
    h.style.margin = "16px 0 0";
    sec.appendChild(h);
    var empty = slot(sec, "fn-p" + i + "-empty", "vk-notice");
    empty.style.gridColumn = "1 / -1";
    var charts = ["reach", "conv", "drop", "time", "winrate"].map(function (k) {
      return slot(sec, "fn-p" + i + "-" + k);
    });
    return {el: sec, empty: empty, charts: charts};
  });

  /* The filter state as a selection: channel / manager key (null = all) and the months. */
  function selection(state) {
    var inRange = monthList.filter(function (m) { return V.inRange(m, state); });
    var all = inRange.length === monthList.length;
    return {
      channel: chosen(state.channel),
      manager: chosen(state.manager),
      pipeline: chosen(state.pipeline),
      months: inRange,
      allMonths: all,
      exact: all || inRange.length === 1
    };
  }

  /* Sliced rows (stage slices or sales cycle) of pipeline p that the selection names. */
  function pick(rows, sel, p) {
    var wanted = {};
    sel.months.forEach(function (m) { wanted[m] = true; });
    return rows.filter(function (r) {
      if (r.pipeline !== p) { return false; }
      if (r.by_channel !== (sel.channel !== null) || (sel.channel !== null && r.channel !== sel.channel)) { return false; }
      if (r.by_manager !== (sel.manager !== null) || (sel.manager !== null && r.manager !== sel.manager)) { return false; }
      if (sel.allMonths) { return !r.by_month; }
      return r.by_month && wanted[r.month] === true;
    });
  }

  /* Per stage: summed counts, and the percentiles where one slice row holds them. */
  function stageFigures(sel, p) {
    var rows = pick(slices, sel, p);
    var perMonth = {};
    rows.forEach(function (r) {
      var k = r.month || ALL;
      perMonth[k] = {in: r.leads_in_pipeline, won: r.leads_won};
    });
    var total = {in: 0, won: 0};
    Object.keys(perMonth).forEach(function (k) {
      total.in += perMonth[k].in || 0;
      total.won += perMonth[k].won || 0;
    });
    var stages = (stagesOf[p] || []).map(function (s) {
      var mine = rows.filter(function (r) { return r.status_id === s.status_id; });
      var sum = function (col) {
        return mine.reduce(function (a, r) { return a + (isNum(r[col]) ? r[col] : 0); }, 0);
      };
      var one = sel.exact && mine.length === 1 ? mine[0] : null;
      var reached = sum("leads_reached");
      var next = s.is_won_step ? null : sum("leads_reached_next");
      return {
        stage: s, label: s.stage_order + ". " + (s.stage_name || s.status_id),
        leads_reached: reached, leads_reached_next: next,
        conversion_to_next: s.is_won_step ? null : ratio(next, reached),
        leads_dropped_off: sum("leads_dropped_off"),
        median_hours_in_stage: one ? one.median_hours_in_stage : null,
        p90_hours_in_stage: one ? one.p90_hours_in_stage : null
      };
    });
    return {stages: stages, leads_in_pipeline: total.in, leads_won: total.won,
            win_rate: ratio(total.won, total.in)};
  }

  function cycleFigures(sel, p) {
    var rows = pick(cycle, sel, p);
    var won = 0, weighted = 0;
    rows.forEach(function (r) { won += r.leads_won; weighted += r.leads_won * r.mean_sales_cycle_days; });
    var one = sel.exact && rows.length === 1 ? rows[0] : null;
    return {leads_won: won, mean: won ? weighted / won : null,
            median: one ? one.median_sales_cycle_days : null,
            p90: one ? one.p90_sales_cycle_days : null};
  }

  function lossByStage(sel, p) {
    var wanted = {};
    sel.months.forEach(function (m) { wanted[m] = true; });
    var out = {};
    loss.forEach(function (r) {
      if (r.pipeline !== p || !wanted[r.month]) { return; }
      if (sel.channel !== null && r.channel !== sel.channel) { return; }
      if (sel.manager !== null && r.manager !== sel.manager) { return; }
      var reason = r.loss_reason_name || V.t("no_reason");
      out[reason] = out[reason] || {};
      out[reason][r.status_id] = (out[reason][r.status_id] || 0) + r.leads_lost;
    });
    return out;
  }

  function renderPipeline(i, sel, fig) {
    var p = pipelines[i].key;
    var open = fig.stages.filter(function (s) { return !s.stage.is_won_step; });
    var base = "fn-p" + i + "-";
    V.chart(base + "reach", {
      title: V.t("leads_reached"), definition: V.t("leads_reached__def"), unit: "count",
      traces: [{type: "bar", x: fig.stages.map(function (s) { return s.label; }),
                y: fig.stages.map(function (s) { return s.leads_reached; }),
                text: fig.stages.map(function (s) {
                  return V.fmt(s.leads_reached, "count") +
                    (isNum(s.conversion_to_next) ? " → " + V.fmt(s.conversion_to_next, "percent") : "");
                }),
                textposition: "auto", textangle: 0, hovertemplate: "%{x}: %{text}<extra></extra>"}],
      layout: {showlegend: false}
    });
    V.chart(base + "conv", {
      title: V.t("conversion_to_next") + " · " + V.t("win_rate") + " " +
        V.fmt(fig.win_rate, "percent"),
      definition: V.t("conversion_to_next__def") + " " + V.t("win_rate__def"),
      unit: "percent",
      traces: [{type: "bar", x: open.map(function (s) { return s.label; }),
                y: open.map(function (s) { return s.conversion_to_next; }),
                text: open.map(function (s) { return V.fmt(s.conversion_to_next, "percent"); }),
                textposition: "auto", textangle: 0, hovertemplate: "%{x}: %{text}<extra></extra>"}],
      layout: {showlegend: false}
    });
    var reasons = lossByStage(sel, p);
    V.chart(base + "drop", {
      title: V.t("leads_dropped_off"), definition: V.t("leads_dropped_off__def"), unit: "count",
      traces: Object.keys(reasons).sort().map(function (reason) {
        var ys = open.map(function (s) { return reasons[reason][s.stage.status_id] || 0; });
        return {type: "bar", name: reason, x: open.map(function (s) { return s.label; }), y: ys,
                hovertemplate: reason + ": %{y}<extra>%{x}</extra>"};
      }),
      layout: {barmode: "stack", showlegend: true, legend: SIDE_LEGEND}
    });
    V.chart(base + "time", {
      title: V.t("hours_in_stage") + (sel.exact ? "" : " — " + V.t("median_range_note")),
      definition: V.t("hours_in_stage__def"), unit: "hours",
      traces: [["median", "median_hours_in_stage"], ["p90", "p90_hours_in_stage"]].map(function (k) {
        return {type: "bar", name: V.t(k[0]), x: open.map(function (s) { return s.label; }),
                y: open.map(function (s) { return s[k[1]]; }),
                text: open.map(function (s) { return V.fmt(s[k[1]], "hours"); }),
                textposition: "none", hovertemplate: V.t(k[0]) + ": %{text}<extra>%{x}</extra>"};
      }),
      layout: {barmode: "group", showlegend: true, legend: SIDE_LEGEND}
    });
    winRateByMonth(base + "winrate", sel, p);
  }

  /* Win rate by lead month over the chosen months: the first stage's month slices. */
  function winRateByMonth(id, sel, p) {
    var monthly = pick(slices, {channel: sel.channel, manager: sel.manager, months: sel.months,
                                allMonths: false}, p);
    var first = {};
    monthly.forEach(function (r) { first[r.month] = r; });
    var ms = sel.months.filter(function (m) { return first[m]; });
    var ys = ms.map(function (x) { return ratio(first[x].leads_won, first[x].leads_in_pipeline); });
    var m = marks(ms, ms.map(function (x) { return complete[x]; }));
    V.chart(id, {
      title: V.t("win_rate_by_month"), definition: V.t("win_rate_by_month__def"), unit: "percent",
      traces: [{type: "scatter", mode: "lines+markers", x: ms, y: ys,
                text: ys.map(function (y) { return V.fmt(y, "percent"); }),
                hovertemplate: "%{x|%Y-%m}: %{text}<extra></extra>"}],
      layout: {shapes: m.shapes, annotations: m.annotations, showlegend: false}
    });
  }

  function render(state) {
    var sel = selection(state);
    var rows = [];
    pipelines.forEach(function (p, i) {
      var sec = sections[i];
      var shown = sel.pipeline === null || sel.pipeline === p.key;
      var fig = shown ? stageFigures(sel, p.key) : null;
      sec.el.style.display = shown ? "grid" : "none";
      if (!shown) { return; }
      if (!fig.leads_in_pipeline) {
        sec.empty.textContent = V.t("no_leads");
        sec.empty.style.display = "";
        sec.charts.forEach(function (c) { c.style.display = "none"; });
        sec.el.style.display = sel.pipeline === null ? "none" : "grid";
        return;
      }
      sec.empty.textContent = "";
      sec.empty.style.display = "none";
      sec.charts.forEach(function (c) { c.style.display = ""; });
      renderPipeline(i, sel, fig);
      var cyc = cycleFigures(sel, p.key);
      rows.push({pipeline: p.label, leads_in_pipeline: fig.leads_in_pipeline,
                 leads_won: fig.leads_won, win_rate: fig.win_rate, cycle_median: cyc.median,
                 cycle_p90: cyc.p90, cycle_mean: cyc.mean});
    });
    var incomplete = sel.months.some(function (m) { return !complete[m]; });
    var notes = [];
    if (incomplete) { notes.push(V.t("incomplete_note")); }
    if (!sel.exact) { notes.push(V.t("median_range_note")); }
    note(document.getElementById("fn-note"), notes.join(" "));
    V.table("fn-summary", {
      title: V.t("sales_cycle"),
      definition: V.t("sales_cycle__def") + " " + V.t("win_rate__def"),
      columns: [
        {key: "pipeline", label: V.t("pipeline")},
        {key: "leads_in_pipeline", label: V.t("leads_in_pipeline"), unit: "count",
         definition: V.t("leads_in_pipeline__def")},
        {key: "leads_won", label: V.t("leads_won"), unit: "count"},
        {key: "win_rate", label: V.t("win_rate"), unit: "percent"},
        {key: "cycle_median", label: V.t("cycle_median"), unit: "days"},
        {key: "cycle_p90", label: V.t("cycle_p90"), unit: "days"},
        {key: "cycle_mean", label: V.t("cycle_mean"), unit: "days"}
      ],
      rows: rows,
      sortable: true
    });
  }

  V.filters({
    months: monthList,
    channel: data.channels || [],
    pipeline: pipelines.map(function (p) { return {value: p.key, label: p.label}; }),
    manager: managers.map(function (m) { return {value: m.key, label: m.label}; })
  }, render);
})();
