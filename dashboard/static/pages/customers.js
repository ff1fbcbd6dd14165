/* Customers and audiences: RFM grid, repurchase status counts, segment sizes and the latest
   sync per platform. A snapshot at the marts' as-of date (no month axis, so no incomplete
   periods to mark); the channel filter applies to the customer figures, not to audiences. */
(function () {
  "use strict";
  var V = window.Voronka;
  var data = V.data;
  if (!data || !data.rfm) { return; }  // the core already shows a build error or a missing page

  V.labels({
    rfm_title: {ru: "RFM-сетка: активные клиенты", en: "RFM grid: active customers"},
    rfm_def: {
      ru: "Активные клиенты по баллам давности (R) и частоты (F) покупок, 1–5 по квинтилям " +
        "среди активных клиентов (5 = самые недавние / самые частые); в ячейке — число " +
        "клиентов и название RFM-сегмента. Неактивные клиенты — сегмент «Churned».",
      en: "Active customers by recency (R) and frequency (F) score, 1-5 by quintile over " +
        "active customers (5 = most recent / most orders); each cell shows the customer " +
        "count and the RFM segment name. Inactive customers are the 'Churned' segment."
    },
    recency: {ru: "Давность, балл R", en: "Recency score R"},
    frequency: {ru: "Частота, балл F", en: "Frequency score F"},
    customers: {ru: "Клиенты", en: "Customers"},
    revenue: {ru: "Выручка", en: "Revenue"},
    share: {ru: "Доля клиентов", en: "Share of customers"},
    segment: {ru: "Сегмент", en: "Segment"},
    seg_title: {ru: "RFM-сегменты", en: "RFM segments"},
    seg_def: {
      ru: "Клиенты и их выручка по RFM-сегменту (имя по паре баллов R, F; «Churned» — " +
        "неактивные: последняя покупка 180 дней назад или раньше).",
      en: "Customers and their revenue per RFM segment (named by the (R, F) score pair; " +
        "'Churned' = inactive: last order 180 days or more before the as-of date)."
    },
    rep_title: {ru: "Повторные покупки: пора, просрочено, потеряно",
      en: "Repurchase: due, overdue, lapsed"},
    rep_def: {
      ru: "Клиенты по ожидаемой следующей покупке на дату отчёта: «пора» — в ближайшие 14 " +
        "дней, «просрочено» — прошла не более чем на срок просрочки (вдвое больше ожидаемого " +
        "интервала, не меньше 90 дней), «потерян» — прошла более чем на этот срок. " +
        "«С согласием» — клиенты, которых можно включить в аудиторию.",
      en: "Customers by expected next order at the as-of date: due = within the next 14 " +
        "days, overdue = past by at most the overdue expiry (twice the expected gap, at least " +
        "90 days), lapsed = past by more. 'Contactable' = customers an audience may include."
    },
    status: {ru: "Статус", en: "Status"},
    rep_table_title: {ru: "Клиенты по статусу повторной покупки",
      en: "Customers by repurchase status"},
    contactable: {ru: "С согласием (можно в аудиторию)", en: "Contactable"},
    st_due: {ru: "пора", en: "due"},
    st_overdue: {ru: "просрочено", en: "overdue"},
    st_lapsed: {ru: "потерян", en: "lapsed"},
    st_upcoming: {ru: "позже", en: "upcoming"},
    st_none: {ru: "нет ожидания", en: "no expectation"},
    aud_title: {ru: "Аудитории: размер сегментов", en: "Audiences: segment sizes"},
    aud_def: {
      ru: "Участники каждого сегмента при его последнем пересчёте (только клиенты с " +
        "согласием на контакт), из состояния аудиторий в хранилище; фильтр канала к " +
        "аудиториям не применяется.",
      en: "Members of each segment at its last refresh (contactable customers only), from " +
        "the warehouse's audience state; the channel filter does not apply to audiences."
    },
    members: {ru: "Участники", en: "Members"},
    changed_at: {ru: "Изменён", en: "Last change"},
    sync_title: {ru: "Аудитории: последняя синхронизация по платформам",
      en: "Audiences: latest sync per platform"},
    sync_def: {
      ru: "Последняя попытка синхронизации сегмента с каждой платформой: статус (success, " +
        "failed, skipped — ниже минимума платформы, exported — файлы для ручной загрузки), " +
        "добавлено / удалено / исключено / отложено клиентов, и когда была последняя успешная.",
      en: "The latest sync attempt of each segment to each platform: status (success, " +
        "failed, skipped = below the platform minimum, exported = files for a manual " +
        "upload), customers added / removed / excluded / pending, and the last success."
    },
    platform: {ru: "Платформа", en: "Platform"},
    finished_at: {ru: "Завершена", en: "Finished"},
    last_success_at: {ru: "Последняя успешная", en: "Last success"},
    added: {ru: "Добавлено", en: "Added"},
    removed: {ru: "Удалено", en: "Removed"},
    excluded: {ru: "Исключено", en: "Excluded"},
    pending: {ru: "Отложено", en: "Pending"},
    attempts: {ru: "Попыток", en: "Attempts"},
    no_audiences: {
      ru: "Состояние аудиторий недоступно: сегменты ещё не пересчитывались, или дашборд " +
        "собран только из опубликованных витрин (схема audiences не публикуется).",
      en: "Audience state is not available: no segment was refreshed yet, or the dashboard " +
        "was built from the published marts alone (the audiences schema is not published)."
    }
  });

  var content = document.getElementById("content");
  ["rfm-grid", "rfm-segments", "repurchase-chart", "repurchase-table", "audience-segments",
    "audience-syncs"].forEach(function (id) {
    var div = document.createElement("div");
    div.id = id;
    div.className = "vk-block";
    content.appendChild(div);
  });

  function inChannel(row, state) {
    return !state || V.matches(row.channel, state.channel);
  }

  function sumBy(rows, keyFn, fields) {
    var out = {};
    var order = [];
    rows.forEach(function (row) {
      var key = keyFn(row);
      if (!(key in out)) {
        out[key] = {};
        fields.forEach(function (f) { out[key][f] = 0; });
        order.push(key);
      }
      fields.forEach(function (f) { out[key][f] += row[f] || 0; });
    });
    return {sums: out, order: order};
  }

  function renderRfm(state) {
    var rows = data.rfm.filter(function (r) { return inChannel(r, state); });
    var scores = [1, 2, 3, 4, 5];
    var cells = {};
    rows.forEach(function (r) {
      var key = r.recency_score + ":" + r.frequency_score;
      var cell = cells[key] || {customers: 0, revenue: 0, segment: r.rfm_segment};
      cell.customers += r.customers;
      cell.revenue += r.revenue;
      cells[key] = cell;
    });
    var z = [], text = [], custom = [];
    scores.forEach(function (f) {
      var zRow = [], tRow = [], cRow = [];
      scores.forEach(function (r) {
        var cell = cells[r + ":" + f];
        zRow.push(cell ? cell.customers : null);  // no customers: an empty cell, not a 0
        tRow.push(cell ? cell.segment + "<br>" + V.fmt(cell.customers, "count") : "");
        cRow.push([cell ? cell.segment : "", V.fmt(cell ? cell.revenue : 0, "money")]);
      });
      z.push(zRow);
      text.push(tRow);
      custom.push(cRow);
    });
    V.chart("rfm-grid", {
      title: V.t("rfm_title"),
      definition: V.t("rfm_def"),
      unit: "count",
      traces: [{
        type: "heatmap", x: scores, y: scores, z: z, text: text, customdata: custom,
        texttemplate: "%{text}", showscale: true, hoverongaps: false,
        colorscale: [[0, "#e8f0fa"], [1, "#1f5fa8"]],
        hovertemplate: V.t("recency") + " %{x}, " + V.t("frequency") + " %{y}<br>" +
          "%{customdata[0]}<br>" + V.t("customers") + ": %{z}<br>" + V.t("revenue") +
          ": %{customdata[1]}<extra></extra>"
      }],
      height: 380,
      layout: {
        xaxis: {title: {text: V.t("recency")}, dtick: 1},
        yaxis: {title: {text: V.t("frequency")}, dtick: 1}
      }
    });
  }

  function renderSegments(state) {
    var rows = data.rfm_segments.filter(function (r) { return inChannel(r, state); });
    var agg = sumBy(rows, function (r) { return r.rfm_segment; }, ["customers", "revenue"]);
    var total = 0;
    agg.order.forEach(function (k) { total += agg.sums[k].customers; });
    V.table("rfm-segments", {
      title: V.t("seg_title"),
      definition: V.t("seg_def"),
      columns: [
        {key: "rfm_segment", label: V.t("segment")},
        {key: "customers", label: V.t("customers"), unit: "count"},
        {key: "share", label: V.t("share"), unit: "percent"},
        {key: "revenue", label: V.t("revenue"), unit: "money"}
      ],
      rows: agg.order.map(function (k) {
        var s = agg.sums[k];
        return {rfm_segment: k, customers: s.customers, revenue: s.revenue,
          share: total ? s.customers / total : null};
      }).sort(function (a, b) { return b.customers - a.customers; }),
      sortable: true
    });
  }

  function renderRepurchase(state) {
    var rows = data.repurchase.filter(function (r) { return inChannel(r, state); });
    var agg = sumBy(rows, function (r) { return r.status; }, ["customers", "contactable"]);
    var statuses = ["due", "overdue", "lapsed", "upcoming", "none"].filter(function (s) {
      return s in agg.sums || ["due", "overdue", "lapsed"].indexOf(s) >= 0;
    });
    var names = statuses.map(function (s) { return V.t("st_" + s); });
    function values(field) {
      return statuses.map(function (s) { return agg.sums[s] ? agg.sums[s][field] : 0; });
    }
    V.chart("repurchase-chart", {
      title: V.t("rep_title"),
      definition: V.t("rep_def"),
      unit: "count",
      traces: [
        {type: "bar", name: V.t("customers"), x: names, y: values("customers")},
        {type: "bar", name: V.t("contactable"), x: names, y: values("contactable")}
      ],
      layout: {barmode: "group", yaxis: {title: {text: V.t("customers")}}}
    });
    V.table("repurchase-table", {
      title: V.t("rep_table_title"),
      definition: V.t("rep_def"),
      columns: [
        {key: "status_label", label: V.t("status")},
        {key: "customers", label: V.t("customers"), unit: "count"},
        {key: "contactable", label: V.t("contactable"), unit: "count"}
      ],
      rows: statuses.map(function (s, i) {
        var v = agg.sums[s] || {customers: 0, contactable: 0};
        return {status: s, status_label: names[i], customers: v.customers,
          contactable: v.contactable};
      }),
      sortable: true
    });
  }

  function renderAudiences() {
    var aud = data.audiences;
    if (!aud.available) {
      var note = document.getElementById("audience-segments");
      note.className = "vk-block vk-notice";
      note.textContent = V.t("no_audiences");
      return;
    }
    var maxMembers = Math.max.apply(null, aud.segments.map(function (s) { return s.members; })
      .concat([0]));
    V.chart("audience-segments", {
      title: V.t("aud_title"),
      definition: V.t("aud_def"),
      unit: "count",
      traces: [{
        type: "bar", orientation: "h",
        y: aud.segments.map(function (s) { return s.segment; }),
        x: aud.segments.map(function (s) { return s.members; }),
        customdata: aud.segments.map(function (s) { return s.changed_at || ""; }),
        hovertemplate: "%{y}: %{x}<br>" + V.t("changed_at") + ": %{customdata}<extra></extra>"
      }],
      height: 120 + 32 * Math.max(aud.segments.length, 1),
      layout: {
        xaxis: {title: {text: V.t("members")}, rangemode: "tozero",
          dtick: maxMembers <= 10 ? 1 : undefined},
        yaxis: {automargin: true}
      }
    });
    V.table("audience-syncs", {
      title: V.t("sync_title"),
      definition: V.t("sync_def"),
      columns: [
        {key: "segment", label: V.t("segment")},
        {key: "platform", label: V.t("platform")},
        {key: "status", label: V.t("status")},
        {key: "finished_at", label: V.t("finished_at")},
        {key: "last_success_at", label: V.t("last_success_at")},
        {key: "added", label: V.t("added"), unit: "count"},
        {key: "removed", label: V.t("removed"), unit: "count"},
        {key: "excluded", label: V.t("excluded"), unit: "count"},
        {key: "pending", label: V.t("pending"), unit: "count"},
        {key: "attempts", label: V.t("attempts"), unit: "count"}
      ],
      rows: aud.syncs,
      sortable: true
    });
  }

  renderAudiences();
  V.filters({channel: data.channels}, function (state) {
    renderRfm(state);
    renderSegments(state);
    renderRepurchase(state);
  });
})();
