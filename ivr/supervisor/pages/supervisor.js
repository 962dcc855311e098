"use strict";
// The supervisor's wallboard. Every value from the server reaches the page through textContent
// (never innerHTML); the charts are Apache ECharts (vendored, served from this site).
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const zone = document.querySelector('meta[name="desk-zone"]').content;
const WORDS = {
  en: {title: "Wallboard", supervisor: "Supervisor", waiting: "Waiting", longest: "longest",
    offered: "Offered today", answered: "Answered", abandoned: "Abandoned", service_level: "Service level",
    within: "answered within {n} s", mean_wait: "Mean wait", mean_talk: "Mean talk", followups_due: "Follow-ups due today",
    overdue: "overdue", satisfaction: "Satisfaction", complaints: "Complaints open", queues: "Queues",
    queue: "Queue", free: "Free", ringing: "Ringing", on_call: "On a call", paused: "Paused",
    logged_out: "Logged out", agents: "Agents", agent: "Agent", state: "State", in_queues: "Queues",
    add: "Add to queue", remove: "Remove from queue", pause: "Pause", unpause: "Unpause", charts: "Charts",
    range: "Range", today: "Today", d7: "7 days", d30: "30 days", all: "All",
    chart_calls: "Calls answered and abandoned", chart_sl: "Service level (%)",
    chart_waits: "How long callers waited", chart_agents: "Calls per agent",
    chart_followups: "Follow-ups on time and late", chart_survey: "Survey scores",
    answers: "answers", chart_satisfaction: "Satisfied (1-2) per agent, %", on_time: "on time", late: "late",
    overdue_open: "overdue",
    unanswered: "not answered", made: "made", live: "live", reconnecting: "reconnecting...",
    connecting: "connecting...", done: "done", ami_down: "Asterisk not connected", seconds: "s",
    abandon_rate: "of offered", none: "-", late_followups: "Overdue follow-ups", number: "Number",
    origin: "Origin", owner: "Owner", due: "Due", reason: "Reason", escalated: "escalated",
    nothing_late: "Nothing overdue.", complaint_cases: "Complaints not yet resolved", customer: "Customer",
    answer_due: "Answer due", what: "What they said", no_complaints: "No open complaints.",
    open: "open", answered_case: "answered"},
  zh: {title: "实时看板", supervisor: "主管", waiting: "排队中", longest: "最长",
    offered: "今日来电", answered: "已接听", abandoned: "放弃", service_level: "服务水平",
    within: "{n} 秒内接听", mean_wait: "平均等待", mean_talk: "平均通话", followups_due: "今日待跟进",
    overdue: "已逾期", satisfaction: "满意度", complaints: "未结投诉", queues: "队列",
    queue: "队列", free: "空闲", ringing: "振铃", on_call: "通话中", paused: "暂停",
    logged_out: "未登录", agents: "坐席", agent: "坐席", state: "状态", in_queues: "所在队列",
    add: "加入队列", remove: "移出队列", pause: "暂停", unpause: "恢复", charts: "图表",
    range: "时间范围", today: "今天", d7: "近7天", d30: "近30天", all: "全部",
    chart_calls: "接听与放弃的来电", chart_sl: "服务水平（%）",
    chart_waits: "来电等待时长分布", chart_agents: "各坐席通话量",
    chart_followups: "按时与逾期的跟进", chart_survey: "满意度评分",
    answers: "份回答", chart_satisfaction: "各坐席满意率（1-2 分，%）", on_time: "按时完成", late: "逾期完成",
    overdue_open: "逾期未完成",
    unanswered: "未接听", made: "外呼", live: "实时", reconnecting: "重新连接中…",
    connecting: "连接中…", done: "已完成", ami_down: "未连接 Asterisk", seconds: "秒",
    abandon_rate: "占来电", none: "-", late_followups: "逾期的跟进", number: "号码", origin: "来源",
    owner: "负责人", due: "应完成", reason: "原因", escalated: "已上报", nothing_late: "没有逾期的跟进。",
    complaint_cases: "未解决的投诉", customer: "客户", answer_due: "应答复", what: "客户原话",
    no_complaints: "没有未结投诉。", open: "待处理", answered_case: "已答复"},
};
let lang = localStorage.getItem("ivr-lang") || ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en");
let board = null;
let chartData = null;
const charts = {};
function t(key) { return (WORDS[lang] || WORDS.en)[key] || WORDS.en[key] || key; }
function el(tag, className, value) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (value !== undefined) node.textContent = value == null || value === "" ? "-" : String(value);
  return node;
}
function text(id, value) {
  document.getElementById(id).textContent = value == null || value === "" ? "-" : String(value);
}
function pct(value) { return value == null ? "-" : value.toFixed(1) + "%"; }
function secs(value) { return value == null ? "-" : Math.round(value) + " " + t("seconds"); }
function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  document.getElementById("lang").textContent = lang === "zh" ? "English" : "中文";
  const link = document.getElementById("link"); link.textContent = t(link.dataset.state);
  if (board) render(board);
  if (chartData) drawCharts(chartData);
  loadLate(); loadComplaints();  // their rows are built in the language of the moment
}
document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("ivr-lang", lang); applyLanguage();
});
function tick() {
  text("clock", new Intl.DateTimeFormat(lang === "zh" ? "zh-CN" : "en-GB", {timeZone: zone,
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false}).format(new Date()) + " " + zone);
}
setInterval(tick, 1000);

function render(b) {
  board = b;
  const today = b.today || {};
  let waiting = 0, longest = null;
  for (const q of b.queues) {
    if (q.waiting != null) waiting += q.waiting;
    if (q.longest_wait != null && q.waiting) longest = Math.max(longest || 0, q.longest_wait);
  }
  text("t-waiting", b.ami ? waiting : "-"); text("t-longest", b.ami && longest != null ? secs(longest) : "-");
  text("t-offered", today.offered); text("t-answered", today.answered); text("t-abandoned", today.abandoned);
  text("t-abandon-rate", today.offered ? (100 * today.abandoned / today.offered).toFixed(1) + "% " + t("abandon_rate") : "");
  text("t-sl", pct(today.service_level)); text("t-sl-within", t("within").replace("{n}", b.service_level_seconds));
  text("t-wait", secs(today.mean_wait)); text("t-talk", secs(today.mean_talk));
  text("t-due", b.followups ? b.followups.due_today : null); text("t-overdue", b.followups ? b.followups.overdue : null);
  text("t-sat", b.satisfaction ? pct(b.satisfaction.satisfied_pct) : null);
  text("t-sat-note", b.satisfaction ? b.satisfaction.answers + " " + t("answers") : null);
  text("t-complaints", b.complaints_open);
  const rows = document.getElementById("queues"); rows.replaceChildren();
  for (const q of b.queues) {
    const row = el("tr"), d = q.today || {}, a = q.agents || {};
    row.dataset.queue = q.queue;
    for (const [cls, v] of [["name", q.queue], ["waiting", q.waiting], ["longest", q.waiting ? secs(q.longest_wait) : "-"],
      ["free", q.agents ? a.free : null], ["on_call", q.agents ? a.on_call : null], ["paused", q.agents ? a.paused : null],
      ["offered", d.offered || 0], ["answered", d.answered || 0], ["abandoned", d.abandoned || 0],
      ["sl", pct(d.service_level)]]) row.appendChild(el("td", cls, v));
    rows.appendChild(row);
  }
  const states = document.getElementById("states"); states.replaceChildren();
  for (const [state, count] of Object.entries(b.states)) {
    states.appendChild(el("span", "state " + state, t(state) + " " + count)); states.appendChild(document.createTextNode(" "));
  }
  const agents = document.getElementById("agents"); agents.replaceChildren();
  for (const agent of b.agents) {
    const row = el("tr"); row.dataset.agent = agent.agent;
    row.appendChild(el("td", "who", [agent.agent, agent.name].filter(Boolean).join(" ")));
    const state = el("td"); state.appendChild(el("span", "state " + (agent.state || ""), agent.state ? t(agent.state) : "-"));
    row.appendChild(state);
    const inQueues = b.queues.filter((q) => q.members.some((m) => m.interface === agent.interface)).map((q) => q.queue);
    row.appendChild(el("td", "queues", inQueues.join(", ")));
    const cell = el("td");
    if (agent.agent && inQueues.length) {
      const paused = agent.state === "paused";
      const button = el("button", "toggle-pause", t(paused ? "unpause" : "pause")); button.type = "button";
      button.addEventListener("click", () => act({action: paused ? "unpause" : "pause", agent: agent.agent}));
      cell.appendChild(button);
    }
    row.appendChild(cell); agents.appendChild(row);
  }
  fillSelect("m-agent", b.agents.filter((a) => a.agent).map((a) => a.agent), false);
  fillSelect("m-queue", b.queues.map((q) => q.queue), false);
  fillSelect("c-queue", b.queues.map((q) => q.queue), true);
  fillSelect("c-agent", b.agents.filter((a) => a.agent).map((a) => a.agent), true);
}
function fillSelect(id, values, withAll) {
  const select = document.getElementById(id), keep = select.value;
  const wanted = (withAll ? [""] : []).concat(values);
  if ([...select.options].map((o) => o.value).join("\u0000") === wanted.join("\u0000")) return;
  select.replaceChildren();
  for (const value of wanted) {
    const option = el("option", "", value === "" ? t("all") : value); option.value = value;
    if (value === "") option.dataset.i18n = "all";
    select.appendChild(option);
  }
  if (wanted.includes(keep)) select.value = keep;
}
async function act(body) {
  const answer = await fetch("/supervisor/api/act", {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: JSON.stringify(body)});
  const reply = await answer.json();
  const acted = document.getElementById("acted");
  if (answer.ok) acted.dataset.i18n = "done"; else delete acted.dataset.i18n;
  acted.textContent = answer.ok ? t("done") : reply.error;
}
document.getElementById("member").addEventListener("submit", (event) => {
  event.preventDefault();
  act({action: "add", agent: document.getElementById("m-agent").value, queue: document.getElementById("m-queue").value});
});
document.getElementById("m-remove").addEventListener("click", () => {
  act({action: "remove", agent: document.getElementById("m-agent").value, queue: document.getElementById("m-queue").value});
});
function listen() {
  const events = new EventSource("/supervisor/events");
  const link = document.getElementById("link");
  events.addEventListener("open", () => { link.dataset.state = "live"; link.textContent = t("live"); });
  events.addEventListener("error", () => { link.dataset.state = "reconnecting"; link.textContent = t("reconnecting"); });
  events.addEventListener("board", (event) => { render(JSON.parse(event.data)); });
}

// ---- charts ----
function chart(id) {
  if (!charts[id]) charts[id] = echarts.init(document.getElementById(id), null, {renderer: "canvas"});
  return charts[id];
}
function bars(labels, series, stacked) {
  return {tooltip: {trigger: "axis"}, legend: {top: 0}, grid: {left: 40, right: 10, top: 30, bottom: 30},
    xAxis: {type: "category", data: labels}, yAxis: {type: "value", minInterval: 1},
    series: series.map(([name, data, color]) => ({name, type: "bar", data, stack: stacked ? "all" : undefined,
      itemStyle: {color}}))};
}
function drawCharts(d) {
  chartData = d;
  chart("chart-calls").setOption(bars(d.calls.labels, [[t("answered"), d.calls.answered, "#4caf50"],
    [t("abandoned"), d.calls.abandoned, "#e57373"]], true), true);
  chart("chart-sl").setOption({tooltip: {trigger: "axis"}, grid: {left: 40, right: 10, top: 20, bottom: 30},
    xAxis: {type: "category", data: d.service_level.labels}, yAxis: {type: "value", min: 0, max: 100},
    series: [{name: t("service_level"), type: "line", data: d.service_level.values, connectNulls: false,
      itemStyle: {color: "#3f6fd8"}}]}, true);
  chart("chart-waits").setOption(bars(d.waits.labels, [[t("answered"), d.waits.answered, "#4caf50"],
    [t("unanswered"), d.waits.unanswered, "#e57373"]], true), true);
  chart("chart-agents").setOption(bars(d.agents.map((a) => a.agent), [[t("answered"), d.agents.map((a) => a.answered), "#3f6fd8"],
    [t("made"), d.agents.map((a) => a.made), "#ffb74d"]], false), true);
  chart("chart-followups").setOption(bars(d.followups.labels, [[t("on_time"), d.followups.on_time, "#4caf50"],
    [t("late"), d.followups.late, "#e57373"], [t("overdue_open"), d.followups.overdue, "#9e9e9e"]], true), true);
  chart("chart-survey").setOption(bars(["1", "2", "3", "4", "5"], [[t("chart_survey"), d.survey.scores, "#3f6fd8"]], false), true);
  const rated = d.survey.per_agent;
  chart("chart-satisfaction").setOption({tooltip: {trigger: "axis"}, legend: {type: "scroll"}, grid: {left: 40, right: 16, bottom: 24},
    xAxis: {type: "category", data: rated.days.map((day) => day.slice(5))}, yAxis: {type: "value", min: 0, max: 100},
    series: Object.entries(rated.agents).map(([agent, values]) => ({name: agent, type: "line", data: values,
      connectNulls: true}))}, true);
  document.getElementById("charts").dataset.loaded = d.range;
}
async function loadCharts() {
  const query = new URLSearchParams({range: document.getElementById("c-range").value});
  const queue = document.getElementById("c-queue").value, agent = document.getElementById("c-agent").value;
  if (queue) query.set("queue", queue);
  if (agent) query.set("agent", agent);
  const answer = await fetch("/supervisor/api/charts?" + query, {credentials: "same-origin"});
  if (answer.ok) drawCharts(await answer.json());
}
for (const id of ["c-range", "c-queue", "c-agent"]) document.getElementById(id).addEventListener("change", loadCharts);
window.addEventListener("resize", () => { for (const c of Object.values(charts)) c.resize(); });
// Overdue follow-ups, soonest due first (the follow-up API; a supervisor sees every agent's).
async function loadLate() {
  const answer = await fetch("/api/followups?which=overdue", {credentials: "same-origin"});
  if (!answer.ok) return;
  const rows = (await answer.json()).followups.map((f) => {
    const row = el("tr", f.escalated ? "escalated" : "");
    const due = new Date(f.due_at).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", {timeZone: zone});
    for (const v of ["#" + f.id, f.number, f.origin, f.owner || "-",
      due + (f.escalated ? " (" + t("escalated") + ")" : ""), [f.reason, f.text].filter(Boolean).join(": ")]) {
      row.appendChild(el("td", "", v));
    }
    return row;
  });
  if (!rows.length) { const row = el("tr"); const cell = el("td", "", t("nothing_late")); cell.colSpan = 6;
    row.appendChild(cell); rows.push(row); }
  document.getElementById("late-followups").replaceChildren(...rows);
}
// Complaints not yet resolved, overdue ones marked (the complaints service's list for supervisors).
async function loadComplaints() {
  const answer = await fetch("/supervisor/complaints", {credentials: "same-origin"});
  if (!answer.ok) return;
  const rows = (await answer.json()).cases.map((c) => {
    const row = el("tr", c.overdue ? "escalated" : "");
    const due = new Date(c.response_due_at).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", {timeZone: zone});
    for (const v of ["#" + c.id, c.customer || c.e164 || "-", c.origin, c.owner || "-",
      due + (c.overdue ? " (" + t("overdue") + ")" : ""), c.status === "answered" ? t("answered_case") : t("open"),
      c.text]) {
      row.appendChild(el("td", "", v));
    }
    return row;
  });
  if (!rows.length) { const row = el("tr"); const cell = el("td", "", t("no_complaints")); cell.colSpan = 7;
    row.appendChild(cell); rows.push(row); }
  document.getElementById("complaint-cases").replaceChildren(...rows);
}
applyLanguage(); tick(); listen(); loadCharts();
setInterval(loadComplaints, 30000);
setInterval(loadCharts, 60000);
setInterval(loadLate, 30000);
