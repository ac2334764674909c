// Rapport console: the little interactivity the pages need (no framework).
"use strict";

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// -- playground: streamed answer (SSE over fetch) with its evidence ----------------------------
function setupChat() {
  const form = document.getElementById("chat");
  if (!form) return;
  const answer = document.getElementById("answer");
  const evidence = document.getElementById("evidence");
  const ws = form.dataset.action;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const peer = data.get("peer");
    const body = {query: data.get("query"), target: data.get("target"), session_id: data.get("session_id")};
    answer.textContent = "";
    evidence.textContent = "";
    answer.classList.add("streaming");
    answer.dataset.state = "streaming";
    try {
      const response = await fetch(ws + encodeURIComponent(peer) + "/chat", {
        method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
        credentials: "same-origin",
      });
      if (!response.ok) {
        let detail = response.statusText;
        try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
        answer.textContent = "The API answered " + response.status + ": " + detail;
        answer.dataset.state = "error";
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, {stream: true});
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          for (const line of frame.split("\n")) {
            if (!line.startsWith("data:")) continue;
            const msg = JSON.parse(line.slice(5).trim());
            if (msg.delta && msg.delta.content) answer.textContent += msg.delta.content;
            if (msg.error) answer.textContent += "\n[error: " + msg.error + "]";
            if (msg.done) showEvidence(msg.evidence, evidence);
          }
        }
      }
      answer.dataset.state = "done";
    } catch (err) {
      answer.textContent += "\n[connection failed: " + err + "]";
      answer.dataset.state = "error";
    } finally {
      answer.classList.remove("streaming");
    }
  });
}

function showEvidence(ev, box) {
  box.textContent = "";
  if (!ev) return;
  const base = document.getElementById("chat").dataset.action.replace(/peers\/$/, "");
  box.appendChild(el("h3", {}, "Evidence"));
  const list = el("ul", {id: "evidence-list"});
  for (const c of ev.conclusions || []) {
    const li = el("li", {"data-kind": "conclusion"});
    li.appendChild(el("span", {class: "level " + c.level}, c.level));
    li.appendChild(document.createTextNode(" " + c.content + " "));
    li.appendChild(el("span", {class: "muted small"}, "(" + c.observer_id + " → " + c.observed_id + ")"));
    list.appendChild(li);
  }
  for (const m of ev.messages || []) {
    const li = el("li", {"data-kind": "message"});
    li.appendChild(el("span", {class: "level message"}, "message"));
    li.appendChild(document.createTextNode(" " + (m.content || "") + " "));
    const a = el("a", {href: base + "sessions/" + encodeURIComponent(m.session_id) + "/messages/" + encodeURIComponent(m.id)},
      "(" + m.peer_id + " in " + m.session_id + ")");
    a.classList.add("small");
    li.appendChild(a);
    list.appendChild(li);
  }
  if (!list.children.length) list.appendChild(el("li", {class: "muted"}, "No evidence: nothing in this memory matched."));
  box.appendChild(list);
}

// -- deriver: poll queue status, draw the backlog over time ------------------------------------
function setupLag() {
  const card = document.getElementById("queue");
  const svg = document.getElementById("lag");
  if (!card || !svg) return;
  const samples = [];
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 140, PAD = 18, KEEP = 150;
  async function tick() {
    try {
      const r = await fetch(card.dataset.statusUrl, {credentials: "same-origin"});
      if (!r.ok) return;
      const s = await r.json();
      for (const [id, key] of [["q-pending", "pending_work_units"], ["q-progress", "in_progress_work_units"],
        ["q-done", "completed_work_units"], ["q-dead", "dead_letter_work_units"], ["q-total", "total_work_units"]]) {
        document.getElementById(id).textContent = s[key];
      }
      samples.push({t: Date.now(), v: s.pending_work_units + s.in_progress_work_units});
      if (samples.length > KEEP) samples.shift();
      draw();
    } catch (e) { /* keep polling */ }
  }
  function draw() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const peak = Math.max(...samples.map((s) => s.v));
    const max = Math.max(1, peak);
    const t0 = samples[0].t, span = Math.max(1, samples[samples.length - 1].t - t0);
    const pts = samples.map((s) => [
      PAD + (W - 2 * PAD) * (samples.length === 1 ? 1 : (s.t - t0) / span),
      H - PAD - (H - 2 * PAD) * (s.v / max),
    ]);
    const area = document.createElementNS(NS, "polygon");
    area.setAttribute("class", "area");
    area.setAttribute("points", [[pts[0][0], H - PAD], ...pts, [pts[pts.length - 1][0], H - PAD]].map((p) => p.join(",")).join(" "));
    svg.appendChild(area);
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", pts.map((p) => p.join(",")).join(" "));
    svg.appendChild(line);
    for (const [y, text] of [[PAD, String(max)], [H - PAD, "0"]]) {
      const axis = document.createElementNS(NS, "line");
      axis.setAttribute("class", "axis");
      axis.setAttribute("x1", String(PAD)); axis.setAttribute("x2", String(W - PAD));
      axis.setAttribute("y1", String(y)); axis.setAttribute("y2", String(y));
      svg.appendChild(axis);
      const tick = document.createElementNS(NS, "text");
      tick.setAttribute("x", "2"); tick.setAttribute("y", String(y + 4));
      tick.textContent = text;
      svg.appendChild(tick);
    }
    document.getElementById("lag-label").textContent = "now " + samples[samples.length - 1].v +
      " waiting · peak " + max + " · " + samples.length + " samples over the last " + Math.round(span / 1000) + " s";
    svg.dataset.samples = String(samples.length);
    svg.dataset.peak = String(peak);
    svg.dataset.latest = String(samples[samples.length - 1].v);
  }
  tick();
  setInterval(tick, Number(card.dataset.every || 2000));
}

document.addEventListener("DOMContentLoaded", () => { setupChat(); setupLag(); });
