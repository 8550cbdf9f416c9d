// The agentexec dashboard: fed by the live stream (activities/stream), no build step, no CDN.
// Every URL is relative to the page, so the router works under any prefix.
"use strict";
(function () {
  const config = window.AGENTEXEC || {};
  const rows = new Map();          // agent_id -> the activity as the table shows it
  let selected = null;             // agent_id whose timeline is open
  const $ = (sel) => document.querySelector(sel);

  async function api(path, options) {
    const response = await fetch(path, options);
    if (!response.ok) throw new Error(path + ": " + response.status + " " + (await response.text()));
    return response.status === 204 ? null : response.json();
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
    return node;
  }
  const pending = (s) => s === "QUEUED" || s === "RUNNING";

  const rowElements = new Map();   // agent_id -> its <tr>, updated in place (a button being
                                   // clicked is never replaced under the pointer)
  function rowElement(a) {
    let tr = rowElements.get(a.agent_id);
    if (!tr) {
      tr = el("tr", { "data-agent-id": a.agent_id },
        el("td", {}, a.agent_type),
        el("td", { class: "id", onclick: () => openTimeline(a.agent_id) }, a.agent_id.slice(0, 8)),
        el("td", {}, el("span", { class: "status" })),
        el("td", {}, el("div", { class: "bar", role: "progressbar" }, el("div", {}))),
        el("td", { class: "latest" }),
        el("td", {}, el("button", { class: "cancel", onclick: () => cancelActivity(a.agent_id) }, "cancel")));
      rowElements.set(a.agent_id, tr);
    }
    const pct = a.latest_percentage == null ? 0 : a.latest_percentage;
    tr.setAttribute("data-status", a.status);
    const status = tr.querySelector(".status");
    status.className = "status " + a.status;
    status.textContent = a.status;
    const bar = tr.querySelector(".bar");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstChild.style.width = pct + "%";
    tr.querySelector(".latest").textContent = a.latest_log || "";
    tr.querySelector("button.cancel").hidden = !(config.cancel && pending(a.status));
    return tr;
  }

  function render() {
    const status = $("#status-filter").value;
    const text = $("#search").value.trim().toLowerCase();
    const body = $("#activities tbody");
    const shown = [...rows.values()]
      .filter((a) => !status || a.status === status)
      .filter((a) => !text || [a.agent_type, a.agent_id, a.latest_log].join(" ").toLowerCase().includes(text))
      .sort((a, b) => (b.created_at > a.created_at ? 1 : -1))
      .map(rowElement);
    const same = shown.length === body.children.length && shown.every((tr, i) => body.children[i] === tr);
    if (!same) body.replaceChildren(...shown);
  }

  async function loadActivities() {
    const page = await api("activities?page_size=100");
    rows.clear();
    rowElements.clear();
    for (const item of page.items) rows.set(item.agent_id, item);
    render();
  }

  function applyChange(change) {
    const row = rows.get(change.agent_id) || {
      agent_id: change.agent_id, agent_type: change.task_name, created_at: change.created_at, latest_percentage: null,
    };
    row.status = change.status;
    row.latest_log = change.message;
    if (change.percentage != null) row.latest_percentage = change.percentage;
    row.updated_at = change.created_at;
    rows.set(change.agent_id, row);
    render();
    if (selected === change.agent_id) addLogLine(change);
    if (!pending(change.status)) refreshSide();
  }

  function addLogLine(line) {
    $("#timeline").append(el("li", {},
      el("time", {}, new Date(line.created_at).toLocaleTimeString()),
      el("span", { class: "status " + line.status }, line.status), " ",
      line.percentage == null ? "" : line.percentage + "% ", line.message));
  }

  async function openTimeline(agentId) {
    selected = agentId;
    const detail = await api("activities/" + agentId);
    $("#detail-panel").hidden = false;
    $("#detail-title").textContent = detail.agent_type + " " + agentId;
    $("#timeline").replaceChildren();
    detail.logs.forEach(addLogLine);
  }

  async function cancelActivity(agentId) {
    const reason = "canceled from the dashboard";
    await api("activities/" + agentId + "/cancel", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ reason }),
    });
  }

  async function refreshSide() {
    const queues = await api("queues");
    $("#queues tbody").replaceChildren(...queues.map((q) => el("tr", {},
      el("td", {}, q.name), el("td", {}, q.high), el("td", {}, q.low), el("td", {}, q.in_flight),
      el("td", {}, q.dead), el("td", {}, q.workers.length))));
    const dead = (await Promise.all(queues.map((q) => api("queues/" + encodeURIComponent(q.name) + "/dead-letters")))).flat();
    $("#dead tbody").replaceChildren(...dead.map((d) => el("tr", {},
      el("td", {}, d.task_name || "?"), el("td", {}, d.reason),
      el("td", {}, el("button", { onclick: () => requeue(d) }, "requeue")))));
    if (config.schedules) {
      $("#schedules-panel").hidden = false;
      const schedules = await api("schedules");
      $("#schedules tbody").replaceChildren(...schedules.map((s) => el("tr", { "data-schedule": s.name },
        el("td", {}, s.name), el("td", {}, s.task_name), el("td", {}, s.cron || s.every),
        el("td", {}, s.enabled ? "yes" : "no"),
        el("td", {}, el("button", { onclick: () => toggle(s) }, s.enabled ? "disable" : "enable")))));
    }
  }

  async function requeue(dead) {
    await api("queues/" + encodeURIComponent(dead.queue_name) + "/dead-letters/requeue", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ids: [dead.id] }),
    });
    refreshSide();
  }

  async function toggle(schedule) {
    await api("schedules/" + encodeURIComponent(schedule.name) + "/" + (schedule.enabled ? "disable" : "enable"), { method: "POST" });
    refreshSide();
  }

  function connect() {
    // EventSource reconnects by itself and sends Last-Event-ID, so nothing is missed
    const source = new EventSource("activities/stream");
    source.addEventListener("open", () => { $("#live").className = "live on"; $("#live").textContent = "live"; });
    source.addEventListener("error", () => { $("#live").className = "live off"; $("#live").textContent = "reconnecting"; });
    source.addEventListener("activity", (event) => applyChange(JSON.parse(event.data)));
  }

  $("#status-filter").addEventListener("change", render);
  $("#search").addEventListener("input", render);
  connect();
  loadActivities().then(refreshSide).catch((e) => console.error(e));
})();
