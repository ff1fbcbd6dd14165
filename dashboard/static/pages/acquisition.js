/* Acquisition: spend, leads, CPL, Cv, new customers, CAC and ROMI by channel and month; the
   campaigns over the chosen months, sortable by CAC and ROMI; LTV/CAC and CAC payback by
   channel. Every figure is a mart row (fct_acquisition_monthly) except the campaign table's
   range totals. ROMI is stored in percent points (x100) and plotted as stored (the point is
   the mart's value), with a "%" axis; the campaign table's derived ROMI is a share. */
(function () {
  "use strict";
  var V = window.Voronka;
  var data = V.data || {};
  var M = data.metrics || {};
  var L = data.labels || {};
  var ALL = "all";

  var rows = data.rows || [];
  var campaigns = data.campaigns || [];
  var channels = data.channels || [];

  /* paid: with every channel shown, draw only channels that ever had spend (a channel
     without spend has CPL and CAC 0 and no ROMI: lines on zero would hide the others). */
  var CHARTS = [
    {id: "acq-spend", metric: "spend", kind: "bar"},
    {id: "acq-leads", metric: "acquisition_leads", kind: "bar"},
    {id: "acq-new", metric: "new_customers", kind: "bar"},
    {id: "acq-cpl", metric: "cpl", kind: "line", paid: true},
    {id: "acq-cv", metric: "cv", kind: "line"},
    {id: "acq-cac", metric: "cac", kind: "line", paid: true},
    {id: "acq-romi", metric: "romi", kind: "line", points: true, paid: true},
    {id: "acq-ltv-cac", metric: "ltv_cac", kind: "line", paid: true},
    {id: "acq-payback", metric: "cac_payback_months", kind: "line", paid: true}
  ];

  var PAID = channels.filter(function (c) {
    return rows.some(function (r) { return r.channel === c && r.spend > 0; });
  });

  /* y axis of a metric stored in percent points (ROMI): the values as they are, with "%". */
  var POINTS_AXIS = {tickformat: ",.0f", hoverformat: ",.1f", ticksuffix: "%"};

  function name(channel) { return V.channelLabel(channel); }

  function isAll(state) { return !state.channel || state.channel === ALL; }

  function layoutDiv(id, wide) {
    var content = document.getElementById("content");
    var div = document.createElement("div");
    div.id = id;
    div.className = "vk-block" + (wide ? " vk-wide" : "");
    content.appendChild(div);
    return div;
  }

  /* incompleteShapes may return shapes or {shapes, annotations}: accept both. */
  function marks(months, flags) {
    var out = V.incompleteShapes ? V.incompleteShapes(months, flags) : [];
    if (Array.isArray(out)) { return {shapes: out, annotations: []}; }
    return {shapes: (out && out.shapes) || [], annotations: (out && out.annotations) || []};
  }

  function byChannelMonth(list) {
    var index = {};
    list.forEach(function (r) { index[r.channel + "|" + r.month] = r; });
    return index;
  }

  var INDEX = byChannelMonth(rows);

  function monthsIn(state) {
    return (data.months || []).filter(function (m) { return V.inRange(m.month, state); });
  }

  /* Channels to draw for a metric: the chosen one, or every channel with a value (plus the
     blended row for ratios, which organic channels would otherwise flatten). */
  function channelsFor(chart, state, months) {
    if (!isAll(state)) { return [state.channel]; }
    var drawn = (chart.paid ? PAID : channels).filter(function (c) {
      return months.some(function (m) {
        var r = INDEX[c + "|" + m.month];
        var v = r ? r[chart.metric] : null;
        return v !== null && v !== undefined && (chart.kind === "line" || v !== 0);
      });
    });
    if (chart.kind === "line") { drawn.push(ALL); }
    return drawn;
  }

  /* Hover: the value formatted by unit and language, then the point's caveats. */
  function trace(chart, channel, months) {
    var unit = (M[chart.metric] || {}).unit;
    var shownScale = chart.points ? 0.01 : 1;  /* percent points -> the share fmt expects */
    var xs = [], ys = [], symbols = [], texts = [];
    months.forEach(function (m) {
      var r = INDEX[channel + "|" + m.month] || {};
      var v = r[chart.metric];
      xs.push(m.month);
      ys.push(v === null || v === undefined ? null : v);
      var immature = chart.metric === "cv" && r.cv_immature;
      symbols.push(immature ? "circle-open" : "circle");
      var notes = [];
      if (immature) { notes.push(L.immature); }
      if (r.spend_covered === false) { notes.push(L.not_covered); }
      var shown = v === null || v === undefined ? null : v * shownScale;
      texts.push(V.fmt(shown, unit) + (notes.length ? " (" + notes.join("; ") + ")" : ""));
    });
    var t = {type: chart.kind === "bar" ? "bar" : "scatter", name: name(channel), x: xs, y: ys,
      text: texts, textposition: "none",
      hovertemplate: "%{text}<extra>%{fullData.name}</extra>"};
    if (chart.kind === "line") {
      t.mode = "lines+markers";
      t.marker = {symbol: symbols, size: 7};
      t.connectgaps = false;
      if (channel === ALL) { t.line = {width: 3, dash: "dot", color: "#333"}; }
    }
    return t;
  }

  function drawCharts(state) {
    var months = monthsIn(state);
    var flags = months.map(function (m) { return m.complete; });
    var mk = marks(months.map(function (m) { return m.month; }), flags);
    CHARTS.forEach(function (chart) {
      var meta = M[chart.metric] || {};
      var traces = channelsFor(chart, state, months).map(function (c) {
        return trace(chart, c, months);
      });
      V.chart(chart.id, {
        title: meta.title, definition: meta.definition, unit: meta.unit,
        traces: traces,
        layout: {barmode: "stack", shapes: mk.shapes, annotations: mk.annotations,
          yaxis: chart.points ? POINTS_AXIS : {},
          xaxis: {dtick: months.length > 12 ? "M3" : "M1", tickangle: -30,
            tick0: months.length ? months[0].month : undefined}}
      });
    });
  }

  /* Campaign totals over the chosen months: sums of the monthly rows; CAC and ROMI are null
     when any month's spend is not covered, CAC also without new customers, ROMI without
     spend (the marts' own rules). */
  function campaignRows(state) {
    var groups = {};
    campaigns.forEach(function (r) {
      if (!V.inRange(r.month, state)) { return; }
      if (!isAll(state) && r.channel !== state.channel) { return; }
      var key = r.channel + "|" + (r.campaign_id === null ? "" : r.campaign_id);
      var g = groups[key];
      if (!g) {
        g = groups[key] = {channel: name(r.channel), campaign: r.campaign_id === null ?
          L.unmatched : r.campaign_name, campaign_id: r.campaign_id, spend: 0, clicks: 0,
          acquisition_leads: 0, new_customers: 0, attributed_revenue: 0, covered: true};
      }
      g.spend += r.spend || 0;
      g.clicks += r.clicks || 0;
      g.acquisition_leads += r.acquisition_leads || 0;
      g.new_customers += r.new_customers || 0;
      g.attributed_revenue += r.attributed_revenue || 0;
      g.covered = g.covered && r.spend_covered !== false;
    });
    return Object.keys(groups).map(function (k) {
      var g = groups[k];
      g.spend = Math.round(g.spend * 100) / 100;
      g.attributed_revenue = Math.round(g.attributed_revenue * 100) / 100;
      g.cpl = g.covered && g.acquisition_leads > 0 ? g.spend / g.acquisition_leads : null;
      g.cac = g.covered && g.new_customers > 0 ? g.spend / g.new_customers : null;
      g.romi = g.covered && g.spend > 0 ? (g.attributed_revenue - g.spend) / g.spend : null;
      return g;
    }).sort(function (a, b) { return b.spend - a.spend; });
  }

  function drawTable(state) {
    var meta = M.campaigns || {};
    V.table("acq-campaigns", {
      title: meta.title, definition: meta.definition, sortable: true,
      columns: [
        {key: "channel", label: L.channel},
        {key: "campaign", label: L.campaign},
        {key: "spend", label: L.spend, unit: "money"},
        {key: "acquisition_leads", label: L.leads, unit: "count"},
        {key: "cpl", label: "CPL", unit: "money"},
        {key: "new_customers", label: L.new_customers, unit: "count"},
        {key: "cac", label: "CAC", unit: "money", definition: (M.cac || {}).definition},
        {key: "attributed_revenue", label: L.revenue, unit: "money"},
        {key: "romi", label: "ROMI", unit: "percent", definition: (M.romi || {}).definition}
      ],
      rows: campaignRows(state)
    });
  }

  CHARTS.forEach(function (chart) { layoutDiv(chart.id); });
  layoutDiv("acq-campaigns", true);

  V.filters({months: (data.months || []).map(function (m) { return m.month; }),
    channel: channels}, function (state) {
    drawCharts(state);
    drawTable(state);
  });
})();
