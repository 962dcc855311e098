"use strict";
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const me = document.getElementById("me").textContent;
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
  const state = document.getElementById("state"); state.textContent = c.state; state.className = "state " + c.state;
  const call = c.call, customer = c.customer || {};
  text("caller", [call.caller_name, call.caller_number].filter(Boolean).join(" "));
  text("customer", customer.name); text("tier", customer.tier); text("owner", customer.owner);
  text("language", customer.language || call.language); text("kind", call.kind);
  text("path", (call.path || []).join(" > ")); text("dtmf", call.dtmf); text("transcript", call.transcript);
  text("reason", call.reason); text("sms", call.sms_text);
  const body = document.getElementById("recent"); body.replaceChildren();
  if (!(c.recent || []).length) {
    const row = document.createElement("tr"), cell = document.createElement("td");
    cell.colSpan = 5; cell.textContent = "No earlier contacts."; row.appendChild(cell); body.appendChild(row);
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
  text("wait", since == null ? "" : (card.state === "ringing" ? "waiting " : "") + since + " s since arrival");
}
setInterval(tick, 1000);
if (card) show(card);
function listen() {
  const events = new EventSource("/agent/events");
  events.addEventListener("open", () => { text("link", "live"); });
  events.addEventListener("error", () => { text("link", "reconnecting..."); });
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
  if (!card) { text("saved", "no call"); return; }
  const answer = await post("/agent/disposition", {uniqueid: card.uniqueid,
    outcome: document.getElementById("outcome").value, note: document.getElementById("note").value,
    follow_up_at: document.getElementById("follow-up-at").value || null});
  text("saved", answer.ok ? "saved" : (await answer.json()).error);
  if (answer.ok) loadFollowups();
});
async function dial(number) {
  const answer = await post("/api/calls", {agent: me, number: number});
  const body = await answer.json();
  text("dialled", answer.ok ? "ringing you, then " + body.number : body.error);
  return answer.ok;
}
document.getElementById("dial").addEventListener("submit", async (event) => {
  event.preventDefault();
  await dial(document.getElementById("number").value);
});

// ---- my follow-ups, soonest due first; overdue ones stand out; one click calls ----
function localTime(iso) {
  return iso ? new Date(iso).toLocaleString([], {dateStyle: "short", timeStyle: "short"}) : "";
}
function followupItem(f) {
  const item = el("li", "followup" + (f.overdue ? " overdue" : ""));
  item.dataset.id = String(f.id);
  item.append(el("strong", "", "#" + f.id), el("span", "", f.number), el("span", "badge", f.origin),
    el("span", "", "step " + f.step), el("span", f.overdue ? "late" : "", (f.overdue ? "OVERDUE, was due " : "due ")
      + localTime(f.due_at)));
  if (f.escalated) item.appendChild(el("span", "late", "escalated"));
  if (f.reason || f.text) item.appendChild(el("span", "", [f.reason, f.text].filter(Boolean).join(": ")));
  if (f.planned.length) item.appendChild(el("span", "", "then " + f.planned.map((p) => localTime(p.due)).join(", ")));
  const call = el("button", "call", "Call"), close = el("button", "close", "Close");
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
    text("followups-count", "Could not load follow-ups: " + error.message); return;
  }
  const list = document.getElementById("followup-list");
  list.replaceChildren(...body.followups.map(followupItem));
  const late = body.followups.filter((f) => f.overdue).length;
  text("followups-count", body.followups.length + " open, " + late + " overdue");
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
  if (value < 60) return value.toFixed(1) + " s";
  const whole = Math.round(value);
  return Math.floor(whole / 60) + " min " + String(whole % 60).padStart(2, "0") + " s";
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
    [c.direction === "outbound" ? "To" : "From", [c.caller_name, c.caller_number].filter(Boolean).join(" ")],
    ["Agent", agent], ["Queue", c.queue], ["Waited", seconds(c.wait_seconds)],
    ["Talked", seconds(c.talk_seconds)], ["Duration", c.channel === "sms" ? "" : seconds(c.duration_seconds)],
    ["Keys", c.dtmf], ["Hung up by", c.hangup_by],
    ["Follow-up", c.followup_id ? "#" + c.followup_id : ""],
    ["Disposition", c.disposition]];
  const long = [["IVR path", c.path], [c.channel === "sms" ? "Message" : "Said", c.transcript],
    ["Why", c.outcome_reason], ["Notes", c.notes]];
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
    list.append(el("dt", "long", "Recording"), cell);
  }
  item.appendChild(list);
  return item;
}
function showSubject(body) {
  const subject = body.subject, customer = subject.customer;
  document.getElementById("subject").hidden = false;
  text("subject-name", customer ? customer.name || "(no name)" : subject.number);
  const facts = customer ? [customer.external_id, customer.tier, customer.language && "language " + customer.language,
    customer.owner && "owner " + customer.owner, customer.do_not_call && "DO NOT CALL",
    customer.phones.join(", ")] : ["not a known customer's number"];
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
  text("prefs-saved", answer.ok ? "saved" : body.error);
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
    text("count", "Could not load the timeline: " + error.message); return;
  }
  const list = document.getElementById("contacts");
  if (!more) { list.replaceChildren(); timeline.subject = subject; showSubject(body); }
  for (const c of body.contacts) list.appendChild(entryItem(c));
  timeline.older = body.older;
  document.getElementById("older").hidden = body.older == null;
  const shown = list.children.length;
  text("count", body.total + " contact" + (body.total === 1 ? "" : "s") + ", newest first; " + shown +
    " shown; times in " + body.zone);
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
    results.appendChild(resultButton("All contacts of " + body.number, {number: body.number}));
  }
  said.textContent = body.customers.length ? body.customers.length + " customer(s) found"
    : (body.number ? "No customer has this number" : "No customer found");
  if (body.customers.length === 1) openTimeline({customer: body.customers[0].id});
});
document.getElementById("older").addEventListener("click", () => {
  if (timeline.subject && timeline.older != null) openTimeline(timeline.subject, true);
});
loadFollowups();
