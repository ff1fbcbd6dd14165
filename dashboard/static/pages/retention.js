/* Retention: CRR and strict retention by month (fct_crr_monthly), active / churned / lapsed
   customers and the repeat purchase rate (fct_customer_value_monthly). Whole-business marts
   (no channel): the page filters months only. Hatched months: incomplete (the as-of month)
   and, on the CRR charts, warm-up months (the activity window reaches back before the data).
   CRR is stored in percent points (x100) and plotted as stored (the point is the mart's
   value) on a "%" axis; hover formats it as a share. */
(function () {
  "use strict";
  var V = window.Voronka;
  var data = V.data || {};
  var M = data.metrics || {};
  var L = data.labels || {};
  var crr = data.crr || [];
  var customers = data.customers || [];

  function slot(id) {
    var div = document.createElement("div");
    div.id = id;
    div.className = "vk-block";
    document.getElementById("content").appendChild(div);
  }

  function marks(months, flags) {
    var out = V.incompleteShapes ? V.incompleteShapes(months, flags) : [];
    if (Array.isArray(out)) { return {shapes: out, annotations: []}; }
    return {shapes: (out && out.shapes) || [], annotations: (out && out.annotations) || []};
  }

  /* A month series; hover shows the value formatted by unit and language, then caveats. */
  function line(list, key, label, unit, shownScale, notes) {
    var ys = list.map(function (r) {
      var v = r[key];
      return v === null || v === undefined ? null : v;
    });
    return {type: "scatter", mode: "lines+markers", name: label,
      x: list.map(function (r) { return r.month; }), y: ys,
      text: list.map(function (r, i) {
        var note = notes ? notes(r) : "";
        var shown = ys[i] === null ? null : ys[i] * (shownScale || 1);
        return V.fmt(shown, unit) + (note ? " (" + note + ")" : "");
      }),
      textposition: "none",
      hovertemplate: "%{text}<extra>%{fullData.name}</extra>"};
  }

  function layout(list, flags) {
    var mk = marks(list.map(function (r) { return r.month; }), flags);
    return {shapes: mk.shapes, annotations: mk.annotations,
      xaxis: {dtick: list.length > 12 ? "M3" : "M1",
        tick0: list.length ? list[0].month : undefined}};
  }

  /* One band over the warm-up months (they are consecutive from the start of the data),
     labelled "warm-up", beside the incomplete-month marks. */
  function warmUpBand(list) {
    var months = list.map(function (r) { return r.month; });
    var parts = marks(months, list.map(function (r) { return !r.is_warm_up; })).shapes;
    if (!parts.length) { return []; }
    var band = Object.assign({}, parts[0], {x1: parts[parts.length - 1].x1,
      fillcolor: "rgba(230,150,40,0.12)",
      line: {color: "rgba(200,120,20,0.6)", width: 1, dash: "dot"},
      name: L.warm_up, legendgroup: "warm_up", showlegend: true});
    band.label = Object.assign({}, parts[0].label || {}, {text: L.warm_up});
    return [band];
  }

  function crrNote(r) {
    var notes = [];
    if (r.is_warm_up) { notes.push(L.warm_up); }
    if (!r.month_complete) { notes.push(L.incomplete); }
    return notes.join("; ");
  }

  function drawCrr(state) {
    var list = crr.filter(function (r) { return V.inRange(r.month, state); });
    /* warm-up months are marked too: their CRR is not comparable with later ones */
    var lay = layout(list, list.map(function (r) { return r.month_complete; }));
    lay.shapes = warmUpBand(list).concat(lay.shapes);
    var m = M.crr || {};
    var crrLayout = Object.assign({}, lay, {yaxis: {tickformat: ",.0f", hoverformat: ",.1f",
      ticksuffix: "%"}});
    V.chart("ret-crr", {title: m.title, definition: m.definition, unit: m.unit,
      traces: [line(list, "crr", m.title, "percent", 0.01, crrNote)], layout: crrLayout});
    var s = M.strict_retention || {};
    V.chart("ret-strict", {title: s.title, definition: s.definition, unit: s.unit,
      traces: [line(list, "strict_retention", s.title, "percent", 1, crrNote)],
      layout: lay});
  }

  function drawCustomers(state) {
    var list = customers.filter(function (r) { return V.inRange(r.month, state); });
    var flags = list.map(function (r) { return r.month_complete; });
    var c = M.customer_status || {};
    var bars = ["active_customers", "churned_customers"].map(function (key) {
      var t = line(list, key, L[key], "count");
      t.type = "bar";
      delete t.mode;
      return t;
    });
    var lapsed = ["lapsed_90d", "lapsed_180d", "lapsed_365d"].map(function (key, i) {
      var t = line(list, key, L[key], "count");
      t.line = {dash: ["dot", "dash", "longdash"][i]};
      return t;
    });
    var lay = layout(list, flags);
    lay.barmode = "stack";
    V.chart("ret-status", {title: c.title, definition: c.definition, unit: c.unit,
      traces: bars.concat(lapsed), layout: lay});
    var r = M.repeat_purchase_rate || {};
    V.chart("ret-repeat", {title: r.title, definition: r.definition, unit: r.unit,
      traces: [line(list, "repeat_purchase_rate", r.title, "percent")], layout: layout(list, flags)});
  }

  ["ret-crr", "ret-strict", "ret-status", "ret-repeat"].forEach(slot);
  V.filters({months: (data.months || []).map(function (m) { return m.month; })},
    function (state) {
    drawCrr(state);
    drawCustomers(state);
  });
})();
