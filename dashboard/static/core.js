/* voronka dashboard core: loaded by every page before the page script.
 *
 * Exposes window.Voronka: the page payload and meta, number formatting by language (the same
 * rules as dashboard/i18n.py fmt_number), labels, filters, and Plotly charts / sortable tables
 * in titled cards. Everything is local: no network request is ever made. */
(function () {
  "use strict";

  var THIN = "\u2009";
  var NBSP = "\u00a0";
  var DECIMALS = {money: 0, count: 0, percent: 1, ratio: 2, days: 1, hours: 1, months: 1};
  var SUFFIX = {
    ru: {money: "₽", percent: "%", ratio: "", count: "", days: "дн.", hours: "ч", months: "мес."},
    en: {money: "RUB", percent: "%", ratio: "", count: "", days: "days", hours: "h",
         months: "months"}
  };
  var MONTHS = {
    ru: ["январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август", "сентябрь",
         "октябрь", "ноябрь", "декабрь"],
    en: ["January", "February", "March", "April", "May", "June", "July", "August", "September",
         "October", "November", "December"]
  };
  var SHORT_MONTHS = {
    ru: ["янв", "фев", "мар", "апр", "май", "июн", "июл", "авг", "сен", "окт", "ноя", "дек"],
    en: ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
  };

  function readJson(id) {
    var node = document.getElementById(id);
    if (!node) { return null; }
    try { return JSON.parse(node.textContent); } catch (e) { return null; }
  }

  var meta = readJson("voronka-meta") || {};
  var data = readJson("voronka-data") || {};
  var lang = meta.lang || document.body.getAttribute("data-lang") || "ru";
  if (lang !== "ru" && lang !== "en") { lang = "en"; }

  var LABELS = {
    all: {ru: "Все", en: "All"},
    from: {ru: "С", en: "From"},
    to: {ru: "По", en: "To"},
    months: {ru: "Месяцы", en: "Months"},
    month: {ru: "Месяц", en: "Month"},
    channel: {ru: "Канал", en: "Channel"},
    pipeline: {ru: "Воронка", en: "Pipeline"},
    manager: {ru: "Менеджер", en: "Manager"},
    incomplete_period: {ru: "Неполный период", en: "Incomplete period"},
    incomplete_short: {ru: "неполный", en: "incomplete"},
    no_data: {ru: "Нет данных", en: "No data"},
    page_missing: {ru: "Страница ещё не собрана", en: "This page is not built yet"},
    page_error: {ru: "Страница не собрана из-за ошибки", en: "This page failed to build"},
    "channel:yandex_direct": {ru: "Яндекс Директ", en: "Yandex Direct"},
    "channel:vk_ads": {ru: "VK Реклама", en: "VK Ads"},
    "channel:google_ads": {ru: "Google Ads", en: "Google Ads"},
    "channel:meta_ads": {ru: "Meta Ads", en: "Meta Ads"},
    "channel:organic": {ru: "Органика", en: "Organic"},
    "channel:referral": {ru: "Рефералы", en: "Referral"},
    "channel:direct": {ru: "Прямые заходы", en: "Direct"},
    "channel:other": {ru: "Другое", en: "Other"},
    "channel:all": {ru: "Все каналы", en: "All channels"},
    "unit:money": {ru: "₽", en: "RUB"},
    "unit:count": {ru: "шт.", en: "count"},
    "unit:percent": {ru: "%", en: "%"},
    "unit:ratio": {ru: "коэфф.", en: "ratio"},
    "unit:days": {ru: "дни", en: "days"},
    "unit:hours": {ru: "часы", en: "hours"},
    "unit:months": {ru: "месяцы", en: "months"}
  };

  /* ---------- numbers ---------- */

  function decimalsFor(v, unit) {
    if (unit === "money" && Math.abs(v) < 100 && v !== Math.trunc(v)) { return 2; }
    if (unit === "count" && v !== Math.trunc(v)) { return 1; }
    return DECIMALS.hasOwnProperty(unit) ? DECIMALS[unit] : 2;
  }

  function group(digits, sep) {
    var out = [];
    while (digits.length > 3) {
      out.unshift(digits.slice(-3));
      digits = digits.slice(0, -3);
    }
    out.unshift(digits);
    return out.join(sep);
  }

  /* value formatted like dashboard/i18n.py fmt_number: ru "1 234,5 ₽", en "1,234.5 RUB";
   * percent takes a share 0..1 and shows it x100; null/NaN shows "—". */
  function fmt(value, unit) {
    unit = unit || "count";
    if (value === null || value === undefined || value === "") { return "—"; }
    var v = Number(value);
    if (!isFinite(v)) { return "—"; }
    if (unit === "percent") { v = v * 100; }
    var places = decimalsFor(v, unit);
    var text = Math.abs(v).toFixed(places);
    var parts = text.split(".");
    var ru = lang === "ru";
    var body = group(parts[0], ru ? THIN : ",") + (parts[1] ? (ru ? "," : ".") + parts[1] : "");
    if (v < 0 && Number(text) !== 0) { body = (ru ? "−" : "-") + body; }
    var suffix = (SUFFIX[lang] || SUFFIX.en)[unit] || "";
    if (!suffix) { return body; }
    return unit === "percent" ? body + suffix : body + NBSP + suffix;
  }

  function fmtMonth(month) {
    if (!month) { return "—"; }
    var m = String(month);
    var idx = Number(m.slice(5, 7)) - 1;
    return (SHORT_MONTHS[lang] || SHORT_MONTHS.en)[idx] + " " + m.slice(0, 4);
  }

  function fmtDate(day) {
    if (!day) { return "—"; }
    var d = String(day).slice(0, 10);
    return lang === "ru" ? d.slice(8, 10) + "." + d.slice(5, 7) + "." + d.slice(0, 4) : d;
  }

  /* ---------- labels ---------- */

  function labels(dict) {
    Object.keys(dict || {}).forEach(function (key) { LABELS[key] = dict[key]; });
  }

  function t(key) {
    var entry = LABELS[key];
    if (!entry) { return String(key); }
    if (typeof entry === "string") { return entry; }
    return entry[lang] || entry.en || String(key);
  }

  function channelLabel(code) {
    return LABELS["channel:" + code] ? t("channel:" + code) : String(code);
  }

  function unitLabel(unit) {
    return LABELS["unit:" + unit] ? t("unit:" + unit) : "";
  }

  /* ---------- DOM ---------- */

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) { return; }
      if (key === "text") { node.textContent = value; }
      else if (key === "className") { node.className = value; }
      else if (key.slice(0, 2) === "on" && typeof value === "function") {
        node.addEventListener(key.slice(2), value);
      } else { node.setAttribute(key, value === true ? "" : value); }
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) { return; }
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  /* The container with this id; created at the end of #content when the page has none. */
  function container(id) {
    var node = document.getElementById(id);
    if (!node) {
      node = el("div", {id: id, className: "vk-block"});
      (document.getElementById("content") || document.body).appendChild(node);
    }
    return node;
  }

  /* A titled card inside the container (reused on re-render, so filters update in place). */
  function card(id, kind, title, definition, unit) {
    var box = container(id);
    var existing = box.querySelector(":scope > .vk-card");
    var head, body;
    if (existing && existing.getAttribute("data-kind") === kind) {
      head = existing.querySelector(".vk-card-title");
      body = existing.querySelector(".vk-card-body");
    } else {
      box.innerHTML = "";
      head = el("h3", {className: "vk-card-title"});
      body = el("div", {className: "vk-card-body"});
      box.appendChild(el("section", {className: "vk-card", "data-kind": kind}, [head, body]));
    }
    head.innerHTML = "";
    head.appendChild(el("span", {className: "vk-metric", text: title || ""}));
    var unitText = unitLabel(unit);
    if (unitText) { head.appendChild(el("span", {className: "vk-unit", text: ", " + unitText})); }
    if (definition) {
      head.setAttribute("title", definition);
      head.appendChild(el("span", {className: "vk-info", "aria-hidden": "true", text: "i"}));
    } else { head.removeAttribute("title"); }
    head.setAttribute("data-definition", definition || "");
    return body;
  }

  /* ---------- Plotly ---------- */

  var D3 = {
    money: {hover: ",.0f", tick: ",.0f"},
    count: {hover: ",.2~f", tick: ",.2~f"},
    percent: {hover: ".1%", tick: ".0%"},
    ratio: {hover: ",.2f", tick: ",.2~f"},
    days: {hover: ",.1f", tick: ",.1~f"},
    hours: {hover: ",.1f", tick: ",.1~f"},
    months: {hover: ",.1f", tick: ",.1~f"}
  };

  function axisSuffix(unit) {
    var s = (SUFFIX[lang] || SUFFIX.en)[unit] || "";
    if (!s || unit === "percent") { return ""; }
    return NBSP + s;
  }

  function unitAxis(unit) {
    var f = D3[unit] || D3.count;
    return {tickformat: f.tick, hoverformat: f.hover, ticksuffix: axisSuffix(unit),
            automargin: true};
  }

  function isMonthList(xs) {
    if (!xs || !xs.length) { return false; }
    for (var i = 0; i < xs.length; i++) {
      if (!/^\d{4}-\d{2}-01/.test(String(xs[i]))) { return false; }
    }
    return true;
  }

  function merge(target, source) {
    Object.keys(source || {}).forEach(function (key) {
      var v = source[key];
      if (v && typeof v === "object" && !Array.isArray(v) && target[key] &&
          typeof target[key] === "object" && !Array.isArray(target[key])) {
        merge(target[key], v);
      } else { target[key] = v; }
    });
    return target;
  }

  function hoverTemplate(trace, unit) {
    var f = (D3[unit] || D3.count).hover;
    var suffix = axisSuffix(unit) + (unit === "percent" ? "" : "");
    var type = trace.type || "scatter";
    if (type === "pie") { return undefined; }
    if (type === "heatmap") {
      return "%{y} · %{x}<br>%{z:" + f + "}" + suffix + "<extra></extra>";
    }
    if (type === "waterfall") {
      return "%{x}<br>%{y:" + f + "}" + suffix + "<extra></extra>";
    }
    var axis = trace.orientation === "h" ? "x" : "y";
    return "%{" + axis + ":" + f + "}" + suffix + "<extra>%{fullData.name}</extra>";
  }

  function isEmpty(traces) {
    if (!traces || !traces.length) { return true; }
    return traces.every(function (tr) {
      var v = tr.y || tr.x || tr.z || tr.values || [];
      return !v.length;
    });
  }

  if (window.Plotly && Plotly.register) {
    try {
      Plotly.register({
        moduleType: "locale", name: "ru", dictionary: {},
        format: {
          days: ["воскресенье", "понедельник", "вторник", "среда", "четверг", "пятница",
                 "суббота"],
          shortDays: ["вс", "пн", "вт", "ср", "чт", "пт", "сб"],
          months: MONTHS.ru, shortMonths: SHORT_MONTHS.ru,
          date: "%d.%m.%Y", decimal: ",", thousands: THIN
        }
      });
    } catch (e) { /* the built-in en locale stays */ }
  }

  /* Plotly.react in a titled card: title = metric name, definition on hover, unit shown,
   * axis and hover values formatted by unit and language. Returns the plot element. */
  function chart(containerId, opts) {
    opts = opts || {};
    var unit = opts.unit || "count";
    var body = card(containerId, "chart", opts.title, opts.definition, unit);
    var plot = body.querySelector(".vk-plot");
    if (!plot) { plot = el("div", {className: "vk-plot"}); body.appendChild(plot); }
    var traces = (opts.traces || []).map(function (tr) {
      var copy = merge({}, tr);
      var trUnit = copy.unit || (copy.yaxis === "y2" && opts.unit2) || unit;
      delete copy.unit;
      if (!copy.hovertemplate) {
        var tpl = hoverTemplate(copy, trUnit);
        if (tpl) { copy.hovertemplate = tpl; }
      }
      return copy;
    });
    var horizontal = traces.length && traces.every(function (tr) { return tr.orientation === "h"; });
    var heat = traces.some(function (tr) { return tr.type === "heatmap"; });
    var first = traces[0] || {};
    var months = isMonthList(horizontal ? first.y : first.x);
    var base = {
      margin: {l: 60, r: 20, t: 10, b: 40},
      height: opts.height || 320,
      separators: lang === "ru" ? "," + THIN : ".,",
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      font: {family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12},
      legend: {orientation: "h", y: -0.2},
      hovermode: months && !heat ? "x unified" : "closest",
      xaxis: {automargin: true}, yaxis: {automargin: true}
    };
    if (!heat) {
      if (horizontal) { base.xaxis = unitAxis(unit); } else { base.yaxis = unitAxis(unit); }
      if (opts.unit2) { base.yaxis2 = merge(unitAxis(opts.unit2), {overlaying: "y", side: "right"}); }
    }
    if (months) {
      var axis = {type: "date", tickformat: "%b %Y", hoverformat: "%b %Y", automargin: true};
      if (horizontal) { base.yaxis = axis; } else { base.xaxis = axis; }
    }
    var layout = merge(base, opts.layout || {});
    if (isEmpty(traces)) {
      layout.annotations = [{text: t("no_data"), showarrow: false, xref: "paper", yref: "paper",
                             x: 0.5, y: 0.5, font: {size: 16, color: "#888"}}];
      layout.xaxis = merge(layout.xaxis || {}, {visible: false});
      layout.yaxis = merge(layout.yaxis || {}, {visible: false});
    }
    var config = {displaylogo: false, responsive: true, locale: lang,
                  modeBarButtonsToRemove: ["lasso2d", "select2d"]};
    if (window.Plotly) { Plotly.react(plot, traces, layout, config); }
    plot.setAttribute("data-unit", unit);
    return plot;
  }

  /* Grey marks over incomplete months (flag false = incomplete), one rect per run of
   * consecutive incomplete months, with one legend entry "incomplete period".
   * months: ["YYYY-MM-01", ...]; completeFlags: [true, false, ...] aligned with months. */
  function incompleteShapes(months, completeFlags) {
    var iso = function (ms) { return new Date(ms).toISOString().slice(0, 10); };
    var index = function (m) { return Number(String(m).slice(0, 4)) * 12 + Number(String(m).slice(5, 7)) - 1; };
    var edge = function (i) {  // the midpoint between month i-1 and month i (bars are centred)
      var y = Math.floor(i / 12), m = i % 12;
      return iso((Date.UTC(y, m - 1, 1) + Date.UTC(y, m, 1)) / 2);
    };
    var bad = [];
    (months || []).forEach(function (month, i) {
      if (completeFlags && completeFlags[i] === false) { bad.push(index(month)); }
    });
    bad.sort(function (a, b) { return a - b; });
    var runs = [];
    bad.forEach(function (i) {
      var last = runs[runs.length - 1];
      if (last && i <= last[1] + 1) { last[1] = Math.max(last[1], i); } else { runs.push([i, i]); }
    });
    return runs.map(function (run, k) {
      return {
        type: "rect", xref: "x", yref: "paper", y0: 0, y1: 1, layer: "below",
        x0: edge(run[0]), x1: edge(run[1] + 1),
        fillcolor: "rgba(120,120,120,0.16)",
        line: {color: "rgba(120,120,120,0.7)", width: 1, dash: "dot"},
        label: {text: t("incomplete_short"), textposition: "top center",
                font: {size: 10, color: "#666"}},
        name: t("incomplete_period"), legendgroup: "incomplete", showlegend: k === 0
      };
    });
  }

  /* A bar trace's marker.pattern that hatches the bars of incomplete months (flag false). */
  function incompletePattern(completeFlags) {
    return {shape: (completeFlags || []).map(function (c) { return c === false ? "/" : ""; }),
            fillmode: "overlay", fgcolor: "#ffffff", solidity: 0.35};
  }

  /* ---------- tables ---------- */

  function compare(a, b) {
    var na = a === null || a === undefined, nb = b === null || b === undefined;
    if (na || nb) { return na && nb ? 0 : (na ? 1 : -1); }
    if (typeof a === "number" && typeof b === "number") { return a - b; }
    return String(a).localeCompare(String(b), lang);
  }

  /* A sortable HTML table in a titled card; cells are formatted by the column's unit, and
   * keep the raw value in data-value (what tests compare with the marts). */
  function table(containerId, opts) {
    opts = opts || {};
    var body = card(containerId, "table", opts.title, opts.definition, null);
    var box = container(containerId);
    var columns = opts.columns || [];
    var rows = (opts.rows || []).slice();
    var sortKey = box.getAttribute("data-sort-key");
    var sortDir = Number(box.getAttribute("data-sort-dir") || 0);
    if (sortKey && sortDir) {
      rows.sort(function (a, b) {
        var na = a[sortKey] === null || a[sortKey] === undefined;
        var nb = b[sortKey] === null || b[sortKey] === undefined;
        if (na || nb) { return compare(a[sortKey], b[sortKey]); }  // nulls last either way
        return sortDir * compare(a[sortKey], b[sortKey]);
      });
    }
    var headRow = el("tr");
    columns.forEach(function (col) {
      var mark = col.key === sortKey ? (sortDir > 0 ? " ▲" : " ▼") : "";
      var unitText = col.unit && col.unit !== "count" ? unitLabel(col.unit) : "";
      var th = el("th", {
        "data-key": col.key, title: col.definition || null,
        className: (col.unit ? "num" : "") + (opts.sortable !== false ? " sortable" : ""),
        text: (col.label || col.key) + (unitText ? ", " + unitText : "") + mark
      });
      if (opts.sortable !== false) {
        th.addEventListener("click", function () {
          var dir = col.key === sortKey ? -sortDir || 1 : (col.unit ? -1 : 1);
          box.setAttribute("data-sort-key", col.key);
          box.setAttribute("data-sort-dir", String(dir));
          table(containerId, opts);
        });
      }
      headRow.appendChild(th);
    });
    var tbody = el("tbody");
    rows.forEach(function (row) {
      var tr = el("tr");
      columns.forEach(function (col) {
        var value = row[col.key];
        var text;
        if (typeof col.format === "function") { text = col.format(value, row); }
        else if (col.unit) { text = fmt(value, col.unit); }
        else { text = value === null || value === undefined ? "—" : String(value); }
        tr.appendChild(el("td", {
          className: col.unit ? "num" : null, text: text,
          "data-key": col.key,
          "data-value": value === null || value === undefined ? "" : String(value)
        }));
      });
      tbody.appendChild(tr);
    });
    if (!rows.length) {
      tbody.appendChild(el("tr", {}, [el("td", {colspan: String(columns.length || 1),
                                               className: "vk-empty", text: t("no_data")})]));
    }
    body.innerHTML = "";
    var tableNode = el("table", {className: "vk-table"}, [el("thead", {}, [headRow]), tbody]);
    body.appendChild(el("div", {className: "vk-table-wrap"}, [tableNode]));
    return tableNode;
  }

  /* ---------- filters ---------- */

  var MONTH_KEYS = ["month", "cohort_month", "created_month", "order_month"];

  function collectMonths(node, out) {
    if (Array.isArray(node)) { node.forEach(function (x) { collectMonths(x, out); }); return; }
    if (!node || typeof node !== "object") { return; }
    Object.keys(node).forEach(function (key) {
      var v = node[key];
      if (MONTH_KEYS.indexOf(key) >= 0 && typeof v === "string" && /^\d{4}-\d{2}-\d{2}/.test(v)) {
        out[v.slice(0, 10)] = true;
      } else if (v && typeof v === "object") { collectMonths(v, out); }
    });
  }

  /* A month list of strings or of records ({month: "YYYY-MM-01", ...}), sorted, distinct. */
  function monthList(list) {
    var found = {};
    list.forEach(function (m) {
      var v = m && typeof m === "object" ? (m.month || m.cohort_month || m.created_month) : m;
      if (v) { found[String(v).slice(0, 10)] = true; }
    });
    return Object.keys(found).sort();
  }

  function monthsOf(spec) {
    if (Array.isArray(spec)) { return monthList(spec); }
    if (Array.isArray(data.months)) { return monthList(data.months); }
    var found = {};
    collectMonths(data, found);
    return Object.keys(found).sort();
  }

  function uniq(list) {
    var seen = {};
    return (list || []).filter(function (v) {
      var key = typeof v === "object" && v !== null ? String(v.value) : String(v);
      if (seen[key]) { return false; }
      seen[key] = true;
      return true;
    });
  }

  function select(id, label, options, value, onChange) {
    var sel = el("select", {id: id, name: id});
    options.forEach(function (opt) {
      var o = el("option", {value: opt.value, text: opt.label});
      if (String(opt.value) === String(value)) { o.selected = true; }
      sel.appendChild(o);
    });
    sel.addEventListener("change", function () { onChange(sel.value); });
    return el("label", {className: "vk-filter", "for": id}, [el("span", {text: label}), sel]);
  }

  /* Filter controls in #filters: a month range (from/to) and a select per other key ("all" by
   * default). Calls onChange(state) now and on every change; state = {from, to, channel,
   * pipeline, manager}. Select ids: filter-from, filter-to, filter-<key>. */
  function filters(spec, onChange) {
    spec = spec || {};
    var host = document.getElementById("filters") || container("filters");
    host.innerHTML = "";
    var state = {from: null, to: null, channel: "all", pipeline: "all", manager: "all"};
    var initial = spec.initial || {};
    var fire = function () { if (onChange) { onChange(Object.assign({}, state)); } };
    if (spec.months) {
      var months = monthsOf(spec.months);
      if (months.length) {
        state.from = initial.from || months[0];
        state.to = initial.to || months[months.length - 1];
        var opts = months.map(function (m) { return {value: m, label: fmtMonth(m)}; });
        host.appendChild(select("filter-from", t("from"), opts, state.from, function (v) {
          state.from = v;
          if (state.to && state.to < v) { state.to = v; document.getElementById("filter-to").value = v; }
          fire();
        }));
        host.appendChild(select("filter-to", t("to"), opts, state.to, function (v) {
          state.to = v;
          if (state.from && state.from > v) { state.from = v; document.getElementById("filter-from").value = v; }
          fire();
        }));
      }
    }
    Object.keys(spec).forEach(function (key) {
      if (key === "months" || key === "initial" || !Array.isArray(spec[key])) { return; }
      state[key] = initial[key] || "all";
      var options = [{value: "all", label: t("all")}].concat(uniq(spec[key]).map(function (v) {
        if (v && typeof v === "object") { return {value: String(v.value), label: v.label || String(v.value)}; }
        return {value: String(v), label: key === "channel" ? channelLabel(v) : String(v)};
      }));
      host.appendChild(select("filter-" + key, t(key), options, state[key], function (v) {
        state[key] = v;
        fire();
      }));
    });
    fire();
    return {state: state, refresh: fire};
  }

  function inRange(month, state) {
    if (!state) { return true; }
    var m = String(month).slice(0, 10);
    return (!state.from || m >= state.from) && (!state.to || m <= state.to);
  }

  /* value passes a select filter ("all" passes everything). */
  function matches(value, selected) {
    return selected === undefined || selected === null || selected === "all" ||
      String(value) === String(selected);
  }

  function notice(text, kind) {
    var content = document.getElementById("content") || document.body;
    content.appendChild(el("p", {className: "vk-notice " + (kind || ""), text: text}));
  }

  function missingPage() {
    notice(data._message || t("page_missing"), "vk-missing");
  }

  if (data && data._error) {
    notice(t("page_error") + ": " + data._error, "vk-error");
  }

  function isNum(v) { return v !== null && v !== undefined && isFinite(v); }
  function ratio(a, b) { return isNum(a) && isNum(b) && b > 0 ? a / b : null; }

  /* An empty card slot appended to `parent` (default: the page's #content). */
  function slot(id, cls, parent) {
    var div = document.createElement("div");
    div.id = id;
    div.className = cls || "voronka-card-slot";
    (parent || document.getElementById("content")).appendChild(div);
    return div;
  }

  /* A notice box: hidden while it has nothing to say. */
  function note(node, text) {
    node.textContent = text;
    node.style.display = text ? "" : "none";
  }

  /* The incomplete-period marks of a month axis as {shapes, annotations}. */
  function marks(ms, flags) {
    var out = incompleteShapes(ms, flags);
    if (Array.isArray(out)) { return {shapes: out, annotations: []}; }
    return {shapes: (out && out.shapes) || [], annotations: (out && out.annotations) || []};
  }

  window.Voronka = {
    data: data, lang: lang, meta: meta,
    fmt: fmt, fmtMonth: fmtMonth, fmtDate: fmtDate,
    t: t, labels: labels, channelLabel: channelLabel, unitLabel: unitLabel,
    filters: filters, inRange: inRange, matches: matches,
    chart: chart, table: table, incompleteShapes: incompleteShapes,
    incompletePattern: incompletePattern,
    el: el, container: container, notice: notice, missingPage: missingPage,
    isNum: isNum, ratio: ratio, slot: slot, note: note, marks: marks
  };
})();
