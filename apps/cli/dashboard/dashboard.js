// The Tributary dashboard's page (served by apps/cli dashboard-server.ts).
// It draws what the server pushes over Server-Sent Events: "hello" with the
// history the server kept, then a "snapshot" every interval. Charts are uPlot
// (window.uPlot, loaded before this module runs). Every value reaches the
// page through textContent, never as markup: stream, queue and group names
// and dead letters' payloads are other people's data.

const PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#b7791f", "#e53e3e", "#4a5568", "#00a3c4"];
/** Tick steps of an axis of counts: 1, 2, 5, 10, 20, 50, … */
const WHOLE_INCREMENTS = Array.from({ length: 30 }, (_, i) => [1, 2, 5][i % 3] * 10 ** Math.floor(i / 3));
const TOKEN_KEY = "tributary-dashboard-token";

// The redrive token rides in the fragment of the printed URL (never sent to a
// server, never in a Referer); keep it for this tab and take it off the address bar.
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) {
  sessionStorage.setItem(TOKEN_KEY, fromHash);
  history.replaceState(null, "", location.pathname + location.search);
}
const token = sessionStorage.getItem(TOKEN_KEY);

const state = { history: [], maxPoints: 900, redrive: false, latest: null, deadQueue: null, deadLetters: [] };

// ---------- formatting ----------
const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${i === 0 ? integer.format(v) : decimal.format(v)} ${units[i]}`;
}
const count = (n) => (n === null || n === undefined ? "-" : integer.format(n));
const rate = (n) => (n === null || n === undefined ? "-" : `${decimal.format(n)}/s`);
function seconds(s) {
  if (s === null || s === undefined) return "-";
  if (s < 1) return `${integer.format(s * 1000)} ms`;
  if (s < 120) return `${decimal.format(s)} s`;
  if (s < 7200) return `${decimal.format(s / 60)} min`;
  return `${decimal.format(s / 3600)} h`;
}

// ---------- DOM helpers ----------
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  return node;
}
const td = (text, cls) => el("td", { class: cls }, text);
const badge = (text, cls = text) => el("span", { class: `badge ${cls}` }, text);

// ---------- charts ----------
class Chart {
  /** `whole`: the values are counts, so the y axis ticks whole numbers. */
  constructor(element, title, format, whole = false) {
    this.element = element;
    this.whole = whole;
    this.title = title;
    this.format = format;
    this.keys = "";
    this.plot = null;
    new ResizeObserver(() => this.plot?.setSize(this.size())).observe(element);
  }
  size() { return { width: Math.max(240, this.element.clientWidth), height: 200 }; }
  /** xs in seconds; series: [[label, values]] of the same length. */
  draw(xs, series) {
    this.element.hidden = series.length === 0;
    const keys = series.map(([label]) => label).join("\u0000");
    const data = [xs, ...series.map(([, values]) => values)];
    if (this.plot && keys === this.keys) {
      this.plot.setData(data);
      return;
    }
    this.plot?.destroy();
    this.keys = keys;
    const format = this.format;
    this.plot = new uPlot({
      ...this.size(),
      title: this.title,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      series: [{}, ...series.map(([label], i) => ({
        label, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: false, points: { show: false },
        value: (u, v) => (v === null || v === undefined ? "-" : format(v)),
      }))],
      axes: [{}, { size: 70, values: (u, values) => values.map((v) => format(v)), ...(this.whole ? { incrs: WHOLE_INCREMENTS } : {}) }],
    }, data, this.element);
    this.element.dataset.series = String(series.length);
  }
}

const charts = {
  ingest: new Chart(document.getElementById("ingest-chart"), "Ingest (events/s)", (v) => decimal.format(v)),
  lag: new Chart(document.getElementById("lag-chart"), "Relay lag (WAL not acknowledged)", bytes),
  wal: new Chart(document.getElementById("wal-chart"), "Retained WAL", bytes),
  groups: new Chart(document.getElementById("group-chart"), "Consumer group lag (events)", (v) => integer.format(v), true),
  queues: new Chart(document.getElementById("queue-chart"), "Queues: ready and dead", (v) => integer.format(v), true),
};

function keysOf(points, pick) {
  const keys = new Set();
  for (const p of points) for (const k of Object.keys(pick(p))) keys.add(k);
  return [...keys].sort();
}

function drawCharts() {
  const points = state.history;
  if (points.length === 0) return;
  const xs = points.map((p) => p.at / 1000);
  // The ingest rate between a point and the one before it.
  const streams = keysOf(points, (p) => p.streams);
  charts.ingest.draw(xs, streams.map((s) => [s, points.map((p, i) => {
    const before = points[i - 1];
    if (!before || before.streams[s] === undefined || p.streams[s] === undefined) return null;
    const perSecond = (p.streams[s] - before.streams[s]) / ((p.at - before.at) / 1000);
    return perSecond >= 0 ? perSecond : null;
  })]));
  const slots = keysOf(points, (p) => p.relays);
  charts.lag.draw(xs, slots.map((s) => [s, points.map((p) => p.relays[s]?.lagBytes ?? null)]));
  charts.wal.draw(xs, slots.map((s) => [s, points.map((p) => p.relays[s]?.retainedBytes ?? null)]));
  const groups = keysOf(points, (p) => p.groups);
  charts.groups.draw(xs, groups.map((g) => [g, points.map((p) => p.groups[g] ?? null)]));
  const queues = keysOf(points, (p) => p.queues);
  charts.queues.draw(xs, queues.flatMap((q) => [
    [`${q} ready`, points.map((p) => p.queues[q]?.ready ?? null)],
    [`${q} dead`, points.map((p) => p.queues[q]?.dead ?? null)],
  ]));
}

// ---------- tables ----------
function currentRate(stream) {
  const [before, last] = state.history.slice(-2);
  if (!before || !last || before.streams[stream] === undefined) return null;
  return Math.max(0, (last.streams[stream] - before.streams[stream]) / ((last.at - before.at) / 1000));
}

function renderAlarms(snapshot) {
  const box = document.getElementById("alarms");
  if (!snapshot.ok) {
    box.replaceChildren(el("div", { class: "alarm" }, `The database does not answer: ${snapshot.error}`));
    return;
  }
  const alarms = snapshot.status.alarms;
  box.replaceChildren(...(alarms.length === 0
    ? [el("div", { class: "calm" }, "No alarms")]
    : alarms.map((a) => el("div", { class: "alarm", "data-alarm": "" }, a))));
}

function renderStreams(status) {
  const rows = status.streams.map((s) => el("tr", { "data-stream": s.stream },
    td(s.stream), td(count(s.partitions), "n"), td(count(s.events), "n events"), td(count(s.retained ?? s.events), "n"),
    td(bytes(s.bytes ?? null), "n"), td(rate(currentRate(s.stream)), "n rate")));
  document.querySelector("#streams tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No streams yet: tributary.create_stream(name, partitions)"))]));
}

function renderRelays(status) {
  const rows = status.relays.map((r) => el("tr", { "data-slot": r.slot },
    td(r.slot), el("td", {}, badge(r.state)), td(count(r.standbys), "n"), td(bytes(r.lagBytes), "n lag"), td(seconds(r.lagSeconds), "n"),
    td(bytes(r.walRetainedBytes), "n"), el("td", {}, r.walStatus ? badge(r.walStatus) : "-")));
  document.querySelector("#relays tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No relay slot: run tributary migrate"))]));
}

function renderGroups(groups) {
  const box = document.getElementById("groups");
  if (groups.length === 0) {
    box.replaceChildren(el("p", { class: "muted" }, "No consumer groups"));
    return;
  }
  box.replaceChildren(...groups.map((g) => {
    const alive = g.members.filter((m) => m.alive).length;
    const maxLag = Math.max(1, ...g.partitions.map((p) => p.lag));
    return el("div", { class: "group", "data-group": g.group },
      el("h3", {}, g.group, " ", el("span", { class: "muted" }, `generation ${g.generation} · ${alive} of ${g.members.length} members alive · lag `),
        el("span", { class: "group-lag" }, count(g.lag))),
      el("p", { class: "muted" }, g.members.length === 0 ? "no members" : g.members.map((m) => `${m.client ?? m.memberId}${m.alive ? "" : " (gone)"}`).join(", ")),
      el("table", {},
        el("thead", {}, el("tr", {}, ...["Stream", "Partition", "Owner", "Committed", "End", "Lag", ""].map((h, i) => el("th", { class: i >= 3 && i <= 5 ? "n" : undefined }, h)))),
        el("tbody", {}, ...g.partitions.map((p) => el("tr", { "data-partition": `${p.stream}/${p.partition}` },
          td(p.stream), td(count(p.partition), "n"), td(p.owner ?? "unassigned"), td(count(p.committedOffset), "n"), td(count(p.endOffset), "n"),
          td(count(p.lag), "n lag"),
          el("td", {}, el("div", { class: "bar", title: `${p.lag} events behind` }, el("span", { style: `width: ${(100 * p.lag) / maxLag}%` })),
            p.behindRetention ? badge("behind retention", "lost") : null))))));
  }));
}

function renderQueues(status) {
  const queues = status.queues ?? [];
  const rows = queues.map((q) => el("tr", { "data-queue": q.queue },
    td(q.queue), td(count(q.ready), "n ready"), td(count(q.inFlight), "n"), td(count(q.delayed), "n"), td(count(q.dead), "n dead"),
    td(seconds(q.oldestReadyAgeSeconds), "n"), td(count(q.workers), "n"), td(rate(q.succeededPerSecond), "n"),
    el("td", {}, el("button", { type: "button", class: "show-dead", onclick: () => openDeadLetters(q.queue) }, "Dead letters"))));
  document.querySelector("#queues tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No queues"))]));
}

function render(snapshot) {
  state.latest = snapshot;
  renderAlarms(snapshot);
  const connection = document.getElementById("connection");
  document.getElementById("updated").textContent = `updated ${new Date(snapshot.at).toLocaleTimeString()}`;
  if (!snapshot.ok) {
    connection.dataset.state = "down";
    connection.textContent = "database unreachable";
    return;
  }
  connection.dataset.state = "live";
  connection.textContent = "live";
  const last = state.history[state.history.length - 1];
  if (!last || last.at !== snapshot.point.at) {
    state.history.push(snapshot.point);
    if (state.history.length > state.maxPoints) state.history.splice(0, state.history.length - state.maxPoints);
  }
  renderStreams(snapshot.status);
  renderRelays(snapshot.status);
  renderGroups(snapshot.groups);
  renderQueues(snapshot.status);
  drawCharts();
}

// ---------- dead letters ----------
const dead = {
  box: document.getElementById("dead-letters"),
  body: document.querySelector("#dead tbody"),
  message: document.getElementById("dead-message"),
  selected: document.getElementById("redrive-selected"),
  all: document.getElementById("redrive-all"),
  selectAll: document.getElementById("dead-select-all"),
};

function selectedIds() {
  return [...dead.body.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);
}

function updateButtons() {
  const can = state.redrive && token !== null;
  dead.selected.disabled = !can || selectedIds().length === 0;
  dead.all.disabled = !can || state.deadLetters.length === 0;
  document.getElementById("redrive-off").hidden = can;
}

async function openDeadLetters(queue, message = "") {
  state.deadQueue = queue;
  dead.box.hidden = false;
  document.getElementById("dead-queue").textContent = queue;
  dead.message.textContent = message || "loading…";
  const response = await fetch(`/api/queues/${encodeURIComponent(queue)}/dead?limit=100`);
  const body = await response.json();
  if (!response.ok) {
    dead.message.textContent = body.error;
    return;
  }
  state.deadLetters = body.deadLetters;
  document.getElementById("dead-total").textContent = body.total > body.deadLetters.length ? `(${body.deadLetters.length} of ${body.total})` : `(${body.total})`;
  dead.message.textContent = message || (body.total === 0 ? `No dead letters in queue ${queue}` : "");
  dead.selectAll.checked = false;
  dead.body.replaceChildren(...body.deadLetters.map((d) => el("tr", { "data-dead-letter": d.id },
    el("td", {}, el("input", { type: "checkbox", value: d.id, "aria-label": `Select dead letter ${d.id}`, onchange: updateButtons })),
    td(d.id, "n"), td(d.key ?? "-"), td(count(d.deliveries), "n"), td(new Date(d.deadAt).toLocaleString()), td(d.lastError ?? "-"),
    td(JSON.stringify(d.payload), "payload"))));
  updateButtons();
}

function confirmRedrive(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "redrive"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
  });
}

async function redrive(ids) {
  const queue = state.deadQueue;
  const n = ids === null ? state.deadLetters.length : ids.length;
  const what = ids === null ? `every dead letter of queue ${queue}` : `${n} dead letter${n === 1 ? "" : "s"}`;
  if (!(await confirmRedrive(`Redrive ${what} back into queue ${queue}? They become ready messages, their deliveries start over.`))) return;
  const response = await fetch(`/api/queues/${encodeURIComponent(queue)}/redrive`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-tributary-token": token ?? "" },
    body: JSON.stringify(ids === null ? { all: true } : { ids }),
  });
  const body = await response.json();
  if (!response.ok) {
    dead.message.textContent = body.error;
    return;
  }
  const missing = body.missing.length > 0 ? ` (${body.missing.join(", ")} no longer dead letters)` : "";
  await openDeadLetters(queue, `Redrove ${body.redriven} dead letter${body.redriven === 1 ? "" : "s"} back into queue ${queue}${missing}.`);
}

dead.selected.addEventListener("click", () => redrive(selectedIds()));
dead.all.addEventListener("click", () => redrive(null));
dead.selectAll.addEventListener("change", () => {
  for (const box of dead.body.querySelectorAll("input[type=checkbox]")) box.checked = dead.selectAll.checked;
  updateButtons();
});
document.getElementById("dead-close").addEventListener("click", () => { dead.box.hidden = true; state.deadQueue = null; });

// ---------- live updates ----------
const events = new EventSource("/api/events");
events.addEventListener("hello", (event) => {
  const hello = JSON.parse(event.data);
  state.redrive = hello.redrive;
  state.maxPoints = Math.max(hello.history.length, Math.ceil((30 * 60_000) / hello.intervalMs));
  state.history = hello.history;
  updateButtons();
});
events.addEventListener("snapshot", (event) => render(JSON.parse(event.data)));
events.addEventListener("error", () => {
  const connection = document.getElementById("connection");
  connection.dataset.state = "connecting";
  connection.textContent = "reconnecting to the dashboard…";
});
