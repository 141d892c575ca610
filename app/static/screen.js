// The big screen: first paint from /api/v1/screen/summary, then live updates by SSE.
(function () {
  "use strict";
  var token = new URLSearchParams(location.search).get("token") || "";
  var q = "?token=" + encodeURIComponent(token);
  var MAX_ITEMS = 20;
  var lastAlarmIds = "";

  function el(id) { return document.getElementById(id); }
  function text(node, value) { node.textContent = value; return node; }
  function make(tag, cls, value) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (value !== undefined) { node.textContent = value; }
    return node;
  }
  function timeOf(iso) {
    var d = new Date(iso);
    return d.toLocaleTimeString("zh-CN", { hour: "2-digit", minute: "2-digit", hour12: false });
  }

  function reportRow(item, isNew) {
    var li = make("li", isNew ? "new" : "");
    li.dataset.id = item.id;
    li.appendChild(make("span", "", item.category + (item.building ? " · " + item.building : "")));
    li.appendChild(make("span", "tag " + item.status, item.status_label));
    li.appendChild(make("span", "", timeOf(item.created_at)));
    return li;
  }

  function renderReports(items) {
    var list = el("report-list");
    list.innerHTML = "";
    items.forEach(function (item) { list.appendChild(reportRow(item, false)); });
  }

  function addReport(item) {
    var list = el("report-list");
    if (list.querySelector('[data-id="' + item.id + '"]')) { return; }
    list.insertBefore(reportRow(item, true), list.firstChild);
    while (list.children.length > MAX_ITEMS) { list.removeChild(list.lastChild); }
    var total = el("today-total");
    total.textContent = String((parseInt(total.textContent, 10) || 0) + 1);
  }

  function bars(node, pairs) {
    node.innerHTML = "";
    var max = Math.max.apply(null, pairs.map(function (p) { return p[1]; }).concat([1]));
    pairs.forEach(function (p) {
      var row = make("div", "bar");
      row.appendChild(make("span", "", p[0]));
      var fill = make("div", "fill");
      fill.style.width = Math.round((p[1] / max) * 100) + "%";
      row.appendChild(fill);
      row.appendChild(make("span", "", String(p[1])));
      node.appendChild(row);
    });
    if (!pairs.length) { node.appendChild(make("div", "", "暂无")); }
  }

  var STATUS = { submitted: "已提交", routed: "已派单", accepted: "已受理", in_progress: "处理中",
                 resolved: "已处理", closed: "已办结", reopened: "重新处理", rejected: "不予受理",
                 duplicate: "重复反映" };

  function renderSummary(s) {
    text(el("community"), s.community + " · 社区数据大屏");
    var r = s.reports || {};
    text(el("today-total"), String(r.today_total || 0));
    var m = r.month || {};
    text(el("month-rate"), m.resolution_rate == null ? "–" : Math.round(m.resolution_rate * 100) + "%");
    text(el("month-median"), m.median_hours_to_resolve == null ? "–" : m.median_hours_to_resolve + " 小时");
    bars(el("by-status"), Object.keys(r.today_by_status || {}).map(function (k) {
      return [STATUS[k] || k, r.today_by_status[k]]; }));
    bars(el("by-category"), Object.keys(r.today_by_category || {}).map(function (k) {
      return [k, r.today_by_category[k]]; }));
    bars(el("overdue"), (s.overdue_by_org || []).map(function (o) { return [o.org, o.overdue]; }));
    renderReports(r.recent || []);
    renderCanteen(s.canteen);
    renderList(el("activities"), (s.activities || []).map(function (a) {
      return a.title + " · " + timeOf(a.starts_at) + " · 余 " + a.seats_left + " 位"; }));
    renderList(el("leaderboard"), (s.leaderboard || []).map(function (p, i) {
      return (i + 1) + ". " + p.name + " · " + p.hours + " 小时"; }));
    renderAlarms(s.alarms || []);
  }

  function renderCanteen(c) {
    var node = el("canteen");
    node.innerHTML = "";
    if (!c) { node.appendChild(make("div", "", "暂无数据")); return; }
    node.appendChild(make("div", "", "今日订单：" + c.orders_today + " 份"));
    node.appendChild(make("div", "", "线上下单占比：" + Math.round((c.online_share || 0) * 100) + "%"));
  }

  function renderList(node, lines) {
    node.innerHTML = "";
    lines.forEach(function (line) { node.appendChild(make("li", "", line)); });
    if (!lines.length) { node.appendChild(make("li", "", "暂无")); }
  }

  function renderAlarms(alarms) {
    var node = el("alarms");
    var ids = alarms.map(function (a) { return a.id; }).join(",");
    if (!alarms.length) { node.className = "alarms hidden"; node.textContent = ""; return; }
    node.className = "alarms";
    node.textContent = "⚠ 紧急告警：" + alarms.map(function (a) {
      return a.kind_label + " · " + a.building + " · " + a.name; }).join("；");
    if (ids !== lastAlarmIds) { beep(); }
    lastAlarmIds = ids;
  }

  function beep() {
    try {
      var ctx = new (window.AudioContext || window.webkitAudioContext)();
      var osc = ctx.createOscillator();
      osc.frequency.value = 880;
      osc.connect(ctx.destination);
      osc.start();
      osc.stop(ctx.currentTime + 0.6);
    } catch (e) { /* no audio device: the banner still shows */ }
  }

  function tick() { text(el("clock"), new Date().toLocaleString("zh-CN", { hour12: false })); }

  function connect() {
    var source = new EventSource("/api/v1/screen/stream" + q);
    source.addEventListener("open", function () {
      var st = el("status"); st.textContent = "实时"; st.className = "status live"; });
    source.addEventListener("error", function () {
      var st = el("status"); st.textContent = "重新连接中…"; st.className = "status"; });
    source.addEventListener("summary", function (e) { renderSummary(JSON.parse(e.data)); });
    source.addEventListener("report", function (e) { addReport(JSON.parse(e.data)); });
    source.addEventListener("alarm", function (e) { renderAlarms(JSON.parse(e.data).alarms); });
  }

  tick();
  setInterval(tick, 1000);
  fetch("/api/v1/screen/summary" + q)
    .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
    .then(function (s) { renderSummary(s); document.body.dataset.ready = "1"; connect(); })
    .catch(function () { text(el("status"), "大屏令牌无效"); });
}());
