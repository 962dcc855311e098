"use strict";
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const me = document.getElementById("me").textContent;
let card = null;
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
    outcome: document.getElementById("outcome").value, note: document.getElementById("note").value});
  text("saved", answer.ok ? "saved" : (await answer.json()).error);
});
document.getElementById("dial").addEventListener("submit", async (event) => {
  event.preventDefault();
  const answer = await post("/api/calls", {agent: me, number: document.getElementById("number").value});
  const body = await answer.json();
  text("dialled", answer.ok ? "ringing you, then " + body.number : body.error);
});
