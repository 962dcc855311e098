"use strict";
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const zone = document.querySelector('meta[name="desk-zone"]').content;
const me = document.getElementById("me").textContent;
// The page in English or Chinese: the browser's language first, then the switch (remembered).
const WORDS = {
  en: {title: "ivr agent page", agent: "Agent", current_call: "Current call", no_call_yet: "No call yet.",
    caller: "Caller", customer: "Customer", tier: "Tier", owner: "Owner", language: "Language", kind: "Kind",
    ivr_path: "IVR path", keys: "Keys", said: "Said", reason: "Reason", sms: "SMS", last_contacts: "Last contacts",
    when: "When", outcome: "Outcome", disposition: "Disposition", notes: "Notes", follow_up_on:
    "Follow up on (for follow-up, callback-scheduled)", note: "Note", save: "Save", call_customer: "Call a customer",
    number: "Number", call: "Call", close: "Close", my_followups: "My follow-ups", loading: "Loading...",
    timeline: "Customer timeline", search_label: "Search by number or name", search: "Search",
    preferred_channel: "Preferred channel", dnc_reason: "Do-not-call reason", mark_dnc: "Mark do-not-call",
    older: "Older contacts", live: "live", reconnecting: "reconnecting...", connecting: "connecting...",
    saved: "saved", no_call: "no call", ringing_you: "ringing you, then {n}", no_earlier: "No earlier contacts.",
    waiting: "waiting ", since_arrival: "{n} s since arrival", followups_failed: "Could not load follow-ups: {n}",
    followups_count: "{n} open, {late} overdue", overdue_was_due: "OVERDUE, was due {n}", due: "due {n}",
    step: "step {n}", escalated: "escalated", then: "then {n}", to: "To", from: "From", queue: "Queue",
    waited: "Waited", talked: "Talked", duration: "Duration", hung_up_by: "Hung up by", followup: "Follow-up",
    message: "Message", why: "Why", recording: "Recording", no_name: "(no name)", language_of: "language {n}",
    owner_of: "owner {n}", do_not_call: "DO NOT CALL", not_a_customer: "not a known customer's number",
    timeline_failed: "Could not load the timeline: {n}",
    count: "{n} contact{s}, newest first; {shown} shown; times in {zone}", all_contacts_of: "All contacts of {n}",
    customers_found: "{n} customer(s) found", number_no_customer: "No customer has this number",
    no_customer: "No customer found", min: "min", s: "s",
    o_resolved: "resolved", "o_follow-up": "follow-up", "o_callback-scheduled": "callback-scheduled", o_sale: "sale",
    o_complaint: "complaint", "o_wrong-number": "wrong-number", o_other: "other", voice: "voice", sms_channel: "sms",
    ringing: "ringing", answered: "answered", ended: "ended"},
  zh: {title: "ivr 坐席页面", agent: "坐席", current_call: "当前来电", no_call_yet: "暂无来电。",
    caller: "来电者", customer: "客户", tier: "等级", owner: "客户经理", language: "语言", kind: "类型",
    ivr_path: "语音导航路径", keys: "按键", said: "所说内容", reason: "原因", sms: "短信", last_contacts: "最近联络",
    when: "时间", outcome: "结果", disposition: "处理结果", notes: "备注",
    follow_up_on: "跟进时间（用于“跟进”和“预约回电”）", note: "备注", save: "保存", call_customer: "呼叫客户",
    number: "号码", call: "呼叫", close: "关闭", my_followups: "我的跟进", loading: "加载中…",
    timeline: "客户联络记录", search_label: "按号码或姓名搜索", search: "搜索",
    preferred_channel: "偏好联络方式", dnc_reason: "勿扰原因", mark_dnc: "标记为勿扰",
    older: "更早的联络", live: "实时", reconnecting: "重新连接中…", connecting: "连接中…",
    saved: "已保存", no_call: "没有来电", ringing_you: "先呼叫您，再呼叫 {n}", no_earlier: "没有更早的联络。",
    waiting: "等待中 ", since_arrival: "来电已 {n} 秒", followups_failed: "无法加载跟进：{n}",
    followups_count: "待办 {n} 条，逾期 {late} 条", overdue_was_due: "已逾期，应于 {n} 完成", due: "应于 {n} 完成",
    step: "第 {n} 步", escalated: "已上报", then: "之后：{n}", to: "拨往", from: "来自", queue: "队列",
    waited: "等待", talked: "通话", duration: "时长", hung_up_by: "挂断方", followup: "跟进",
    message: "短信内容", why: "说明", recording: "录音", no_name: "（无姓名）", language_of: "语言 {n}",
    owner_of: "客户经理 {n}", do_not_call: "勿扰", not_a_customer: "不是已知客户的号码",
    timeline_failed: "无法加载联络记录：{n}",
    count: "共 {n} 条联络，最新在前；已显示 {shown} 条；时间为 {zone}", all_contacts_of: "{n} 的全部联络",
    customers_found: "找到 {n} 位客户", number_no_customer: "没有客户使用此号码",
    no_customer: "未找到客户", min: "分", s: "秒",
    o_resolved: "已解决", "o_follow-up": "需跟进", "o_callback-scheduled": "预约回电", o_sale: "成交",
    o_complaint: "投诉", "o_wrong-number": "打错电话", o_other: "其他", voice: "电话", sms_channel: "短信",
    ringing: "振铃中", answered: "通话中", ended: "已结束"},
};
let lang = localStorage.getItem("ivr-lang") || ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en");
function t(key, vars) {
  let words = (WORDS[lang] || WORDS.en)[key] || WORDS.en[key] || key;
  for (const [name, value] of Object.entries(vars || {})) words = words.split("{" + name + "}").join(String(value));
  return words;
}
function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  document.getElementById("q").placeholder = lang === "zh" ? "138 0013 8000、+86…、姓名、外部编号或 #编号"
    : "138 0013 8000, +86..., a name, an external id or #id";
  document.getElementById("lang").textContent = lang === "zh" ? "English" : "中文";
  const link = document.getElementById("link"); link.textContent = t(link.dataset.state);
  if (card) show(card);
}
let card = null;
// The customer timeline: whose it is, the cursor of the next (older) page, the call it was opened for.
const timeline = {subject: null, older: null, card: null};
try { card = JSON.parse(sessionStorage.getItem("ivr-card") || "null"); } catch (e) { card = null; }
function text(id, value) {
  document.getElementById(id).textContent = value == null || value === "" ? "-" : String(value);
}
function post(path, body) {
  return fetch(path, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: JSON.stringify(body)});
}
function show(c) {
  card = c; sessionStorage.setItem("ivr-card", JSON.stringify(c));
  document.getElementById("empty").hidden = true; document.getElementById("details").hidden = false;
  const state = document.getElementById("state"); state.textContent = t(c.state); state.className = "state " + c.state;
  const call = c.call, customer = c.customer || {};
  text("caller", [call.caller_name, call.caller_number].filter(Boolean).join(" "));
  text("customer", customer.name); text("tier", customer.tier); text("owner", customer.owner);
  text("language", customer.language || call.language); text("kind", call.kind);
  text("path", (call.path || []).join(" > ")); text("dtmf", call.dtmf); text("transcript", call.transcript);
  text("reason", call.reason); text("sms", call.sms_text);
  const body = document.getElementById("recent"); body.replaceChildren();
  if (!(c.recent || []).length) {
    const row = document.createElement("tr"), cell = document.createElement("td");
    cell.colSpan = 5; cell.textContent = t("no_earlier"); row.appendChild(cell); body.appendChild(row);
  }
  for (const r of c.recent || []) {
    const row = document.createElement("tr");
    for (const v of [r.started_at, r.kind, r.outcome, r.disposition, r.notes]) {
      const cell = document.createElement("td"); cell.textContent = v || "-"; row.appendChild(cell);
    }
    body.appendChild(row);
  }
  tick();
  if (!timeline.card || timeline.card !== c.uniqueid) {  // a new call: its caller's whole timeline
    timeline.card = c.uniqueid;
    if (customer.id) openTimeline({customer: customer.id});
    else if (call.caller_e164) openTimeline({number: call.caller_e164});
  }
}
function tick() {
  if (!card) return;
  const since = card.call.arrived_at ? Math.max(0, Math.round(Date.now() / 1000 - card.call.arrived_at)) : null;
  text("wait", since == null ? "" : (card.state === "ringing" ? t("waiting") : "") + t("since_arrival", {n: since}));
}
setInterval(tick, 1000);
if (card) show(card);
function listen() {
  const events = new EventSource("/agent/events");
  const link = document.getElementById("link");
  events.addEventListener("open", () => { link.dataset.state = "live"; text("link", t("live")); });
  events.addEventListener("error", () => { link.dataset.state = "reconnecting"; text("link", t("reconnecting")); });
  events.addEventListener("card", (event) => {
    const c = JSON.parse(event.data);
    if (c.agent !== me) return;
    show(c);
    post("/agent/ack", {uniqueid: c.uniqueid, state: c.state});
  });
}
listen();
document.getElementById("disposition").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!card) { text("saved", t("no_call")); return; }
  const answer = await post("/agent/disposition", {uniqueid: card.uniqueid,
    outcome: document.getElementById("outcome").value, note: document.getElementById("note").value,
    follow_up_at: document.getElementById("follow-up-at").value || null});
  text("saved", answer.ok ? t("saved") : (await answer.json()).error);
  if (answer.ok) loadFollowups();
});
async function dial(number) {
  const answer = await post("/api/calls", {agent: me, number: number});
  const body = await answer.json();
  text("dialled", answer.ok ? t("ringing_you", {n: body.number}) : body.error);
  return answer.ok;
}
document.getElementById("dial").addEventListener("submit", async (event) => {
  event.preventDefault();
  await dial(document.getElementById("number").value);
});

// ---- my follow-ups, soonest due first; overdue ones stand out; one click calls ----
function localTime(iso) {
  return iso ? new Date(iso).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB",
    {dateStyle: "short", timeStyle: "short", timeZone: zone}) : "";
}
function followupItem(f) {
  const item = el("li", "followup" + (f.overdue ? " overdue" : ""));
  item.dataset.id = String(f.id);
  item.append(el("strong", "", "#" + f.id), el("span", "", f.number), el("span", "badge", f.origin),
    el("span", "", t("step", {n: f.step})),
    el("span", f.overdue ? "late" : "", t(f.overdue ? "overdue_was_due" : "due", {n: localTime(f.due_at)})));
  if (f.escalated) item.appendChild(el("span", "late", t("escalated")));
  if (f.reason || f.text) item.appendChild(el("span", "", [f.reason, f.text].filter(Boolean).join(": ")));
  if (f.planned.length) item.appendChild(el("span", "", t("then", {n: f.planned.map((p) => localTime(p.due)).join(", ")})));
  const call = el("button", "call", t("call")), close = el("button", "close", t("close"));
  call.type = close.type = "button";
  call.addEventListener("click", () => dial(f.number));
  close.addEventListener("click", async () => {
    const answer = await post("/api/followups", {close: f.id});
    if (answer.ok) loadFollowups();
  });
  item.append(call, close);
  return item;
}
async function loadFollowups() {
  let body;
  try { body = await getJson("/api/followups", {}); } catch (error) {
    text("followups-count", t("followups_failed", {n: error.message})); return;
  }
  const list = document.getElementById("followup-list");
  list.replaceChildren(...body.followups.map(followupItem));
  const late = body.followups.filter((f) => f.overdue).length;
  text("followups-count", t("followups_count", {n: body.followups.length, late: late}));
}
setInterval(loadFollowups, 30000);

// ---- the customer timeline: every value goes into the page with textContent only ----
function el(tag, className, value) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (value != null) node.textContent = String(value);
  return node;
}
async function getJson(path, params) {
  const answer = await fetch(path + "?" + new URLSearchParams(params), {credentials: "same-origin"});
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.error || String(answer.status));
  return body;
}
function seconds(value) {
  if (value == null) return "";
  if (value < 60) return value.toFixed(1) + " " + t("s");
  const whole = Math.round(value);
  return Math.floor(whole / 60) + " " + t("min") + " " + String(whole % 60).padStart(2, "0") + " " + t("s");
}
function entryItem(c) {
  const item = el("li", "entry " + c.channel);
  const head = el("div", "head");
  head.append(el("time", "when", c.local_time), el("span", "badge", c.channel === "sms" ? "SMS" : "call"),
    el("span", "kind", c.direction + " " + c.kind),
    el("span", "outcome", [c.outcome, c.queue_outcome].filter(Boolean).join(" / ")));
  item.appendChild(head);
  const agent = c.agent ? (c.agent_name ? c.agent + " (" + c.agent_name + ")" : c.agent) : "";
  // Short facts side by side, then the long ones (what was said or written, notes) a line each.
  const short = [
    [t(c.direction === "outbound" ? "to" : "from"), [c.caller_name, c.caller_number].filter(Boolean).join(" ")],
    [t("agent"), agent], [t("queue"), c.queue], [t("waited"), seconds(c.wait_seconds)],
    [t("talked"), seconds(c.talk_seconds)], [t("duration"), c.channel === "sms" ? "" : seconds(c.duration_seconds)],
    [t("keys"), c.dtmf], [t("hung_up_by"), c.hangup_by],
    [t("followup"), c.followup_id ? "#" + c.followup_id : ""],
    [t("disposition"), c.disposition]];
  const long = [[t("ivr_path"), c.path], [t(c.channel === "sms" ? "message" : "said"), c.transcript],
    [t("why"), c.outcome_reason], [t("notes"), c.notes]];
  const list = el("dl");
  for (const [label, value] of short) {
    if (value !== "" && value != null) list.append(el("dt", "", label), el("dd", "", value));
  }
  for (const [label, value] of long) {
    if (value !== "" && value != null) list.append(el("dt", "long", label), el("dd", "long", value));
  }
  if (c.recording && /^\/recordings\/[0-9]+$/.test(c.recording)) {
    const audio = document.createElement("audio");
    audio.controls = true; audio.preload = "none"; audio.src = c.recording;
    const cell = el("dd", "long"); cell.appendChild(audio);
    list.append(el("dt", "long", t("recording")), cell);
  }
  item.appendChild(list);
  return item;
}
function showSubject(body) {
  const subject = body.subject, customer = subject.customer;
  document.getElementById("subject").hidden = false;
  text("subject-name", customer ? customer.name || t("no_name") : subject.number);
  const facts = customer ? [customer.external_id, customer.tier, customer.language && t("language_of", {n: customer.language}),
    customer.owner && t("owner_of", {n: customer.owner}), customer.do_not_call && t("do_not_call"),
    customer.phones.join(", ")] : [t("not_a_customer")];
  text("subject-facts", facts.filter(Boolean).join(" · ") +
    (customer && customer.do_not_call_reason ? " (" + customer.do_not_call_reason + ")" : ""));
  document.getElementById("prefs").hidden = !customer;
  if (customer) document.getElementById("channel").value = customer.preferred_channel || "voice";
}
async function saveCustomer(change) {
  const subject = timeline.subject;
  if (!subject || !subject.customer) return;
  const answer = await post("/agent/customer", Object.assign({customer: subject.customer}, change));
  const body = await answer.json();
  text("prefs-saved", answer.ok ? t("saved") : body.error);
  if (answer.ok) openTimeline(subject);
}
document.getElementById("prefs").addEventListener("submit", (event) => {
  event.preventDefault();
  saveCustomer({preferred_channel: document.getElementById("channel").value});
});
document.getElementById("dnc").addEventListener("click", () => {
  saveCustomer({do_not_call: true, reason: document.getElementById("dnc-reason").value});
});
async function openTimeline(subject, more) {
  const params = Object.assign({}, subject);
  if (more) params.before = timeline.older;
  let body;
  try { body = await getJson("/agent/api/timeline", params); } catch (error) {
    text("count", t("timeline_failed", {n: error.message})); return;
  }
  const list = document.getElementById("contacts");
  if (!more) { list.replaceChildren(); timeline.subject = subject; showSubject(body); }
  for (const c of body.contacts) list.appendChild(entryItem(c));
  timeline.older = body.older;
  document.getElementById("older").hidden = body.older == null;
  const shown = list.children.length;
  text("count", t("count", {n: body.total, s: lang === "en" && body.total !== 1 ? "s" : "", shown: shown,
    zone: body.zone}));
}
function resultButton(label, subject) {
  const item = el("li"), button = el("button", "", label);
  button.type = "button";
  button.addEventListener("click", () => openTimeline(subject));
  item.appendChild(button);
  return item;
}
document.getElementById("search").addEventListener("submit", async (event) => {
  event.preventDefault();
  const results = document.getElementById("results"), said = document.getElementById("searched");
  results.replaceChildren(); said.hidden = false;
  let body;
  try { body = await getJson("/agent/api/search", {q: document.getElementById("q").value}); } catch (error) {
    said.textContent = error.message; return;
  }
  for (const c of body.customers) {
    const label = [c.name || "(no name)", c.external_id, c.phones.join(", "), c.tier].filter(Boolean);
    results.appendChild(resultButton(label.join(" · "), {customer: c.id}));
  }
  if (body.number && !body.customers.length) {
    results.appendChild(resultButton(t("all_contacts_of", {n: body.number}), {number: body.number}));
  }
  said.textContent = body.customers.length ? t("customers_found", {n: body.customers.length})
    : t(body.number ? "number_no_customer" : "no_customer");
  if (body.customers.length === 1) openTimeline({customer: body.customers[0].id});
});
document.getElementById("older").addEventListener("click", () => {
  if (timeline.subject && timeline.older != null) openTimeline(timeline.subject, true);
});
loadFollowups();
document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("ivr-lang", lang); applyLanguage(); loadFollowups();
  if (timeline.subject) openTimeline(timeline.subject);
});
applyLanguage();
