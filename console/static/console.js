// eventsrv console: one page, no build step, no dependency.
//
// The token is kept in this tab's sessionStorage only and sent as an
// Authorization header (fetch) or in the WebSocket init, never in a URL.
// Live events come over one WebSocket to the broadcast server, which
// resumes from the last event ID after a drop (README: "Event IDs, history
// and resume"). The event list keeps at most MAX_EVENTS rows in the DOM and
// draws new events once per animation frame, so that a stream of hundreds
// of events a second leaves the page responsive.

const MAX_EVENTS = 1000; // events kept, and rows in the DOM
const MAX_TASKS = 200; // tasks listed; the oldest finished go first
const DRAW_MS = 100; // new rows are drawn at most this often
const PREVIEW_CHARS = 240; // one-line preview of an event's data
const PRETTY_CHARS = 65536; // pretty-printed data shown when expanded
const POLL_MS = 2000; // admin views: /admin/clients, /admin/queues and /admin/status
const STATUS_WINDOW_MS = 10 * 60 * 1000; // status chart: the last 10 minutes
const RATE_SECONDS = 60; // sparklines: the last minute, per second
const RATE_NAMES = 10; // sparklines shown, the busiest names first
const TOKEN_KEY = "eventsrv.console.token";

// A JWT is three base64url segments; anything else is a Basic token.
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") e.className = v;
      else if (k in e) e[k] = v;
      else e.setAttribute(k, v);
    }
  }
  e.append(...children);
  return e;
}

// ---- Names and patterns: a name ending in * matches every name with the
// prefix before it, as the server's subscriptions and tokens do.

function matches(pattern, name) {
  return pattern.endsWith("*") ? name.startsWith(pattern.slice(0, -1)) : pattern === name;
}

// allows reports whether a token allowed `allowed` may subscribe to
// `wanted` (a name or a pattern): the server's pattern-against-pattern
// check.
function allows(allowed, wanted) {
  if (!allowed.endsWith("*")) return allowed === wanted;
  return wanted.startsWith(allowed.slice(0, -1));
}

function parseNames(text) {
  return [...new Set(text.split(/[\s,]+/).filter((s) => s !== ""))];
}

// ---- Formatting

const pad = (n, w = 2) => String(n).padStart(w, "0");
function clock(d) {
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
function duration(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  const d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${s} s`;
  return `${s} s`;
}
function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
function rate(x) {
  if (!Number.isFinite(x)) return "–";
  return x >= 100 ? Math.round(x).toLocaleString() : x.toFixed(1);
}
function since(date) {
  const s = (Date.now() - date.getTime()) / 1000;
  return s < 60 ? "just now" : `${duration(s)} ago`;
}

// ---- Session: the token, its Authorization header, and what /whoami said.

const session = {
  token: "",
  auth: "",
  who: null,
  config: null,
  expiryTimer: 0,
};

function authorization(token) {
  return (JWT.test(token) ? "Bearer " : "Basic ") + token;
}

// api calls the listen server (paths relative to /console/, so that the
// console works under a reverse proxy's prefix too).
async function api(method, path, body, auth = session.auth) {
  const headers = { Authorization: auth };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch("../" + path, { method, headers, body, cache: "no-store", credentials: "omit" });
  let json = null;
  try {
    json = await res.json();
  } catch {
    // not JSON: json stays null
  }
  return { status: res.status, json };
}

async function loadConfig() {
  if (session.config) return session.config;
  try {
    const res = await fetch("config.json", { cache: "no-store", credentials: "omit" });
    session.config = await res.json();
  } catch {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    session.config = { broadcast_url: `${scheme}//${location.hostname}:8081/` };
  }
  return session.config;
}

function setConn(stateName, text) {
  $("conn").dataset.state = stateName;
  $("conn-text").textContent = text;
}

function showLoginError(text) {
  $("token-error").textContent = text;
  $("token").setAttribute("aria-invalid", text ? "true" : "false");
}

async function login(raw) {
  const token = raw.trim().replace(/^(Basic|Bearer)\s+/, "");
  if (token === "") {
    showLoginError("Paste a token first.");
    return false;
  }
  const auth = authorization(token);
  let r;
  $("login").disabled = true;
  try {
    r = await api("GET", "whoami", undefined, auth);
  } catch (err) {
    showLoginError(`Cannot reach the server: ${err.message}`);
    return false;
  } finally {
    $("login").disabled = false;
  }
  if (r.status !== 200 || !r.json || !Array.isArray(r.json.subscribe)) {
    const code = r.json?.code ?? `HTTP ${r.status}`;
    let msg = r.json?.message ?? "";
    if (!/^invalid token/i.test(msg)) msg = "invalid token" + (msg ? ": " + msg : "");
    showLoginError(`${code}: ${msg}`);
    sessionStorage.removeItem(TOKEN_KEY);
    $("token").focus();
    return false;
  }
  showLoginError("");
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  session.token = token;
  session.auth = auth;
  session.who = r.json;
  await loadConfig();
  start();
  return true;
}

function logout() {
  stop();
  sessionStorage.removeItem(TOKEN_KEY);
  session.token = session.auth = "";
  session.who = null;
  $("app").hidden = true;
  $("who").hidden = true;
  $("login-view").hidden = false;
  setConn("idle", "Not logged in");
  $("token").focus();
}

// ---- Start and stop the views for a logged-in session.

let live = null;

function start() {
  const who = session.who;
  $("login-view").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  renderWho();

  $("tab-clients").hidden = !who.admin;
  $("tab-queues").hidden = !who.admin;
  $("tab-status").hidden = !who.admin;
  const canSubscribe = who.subscribe.length > 0;
  const canPublish = who.publish.length > 0;

  $("no-subscribe").hidden = canSubscribe;
  $("no-subscribe").textContent = canSubscribe ? "" : who.admin
    ? "This token may not subscribe to any event, so there are no live events here. The admin views (Clients, Queues, Status) work."
    : "This token may not subscribe to any event, so there are no live events here.";
  for (const id of ["watch", "watch-apply", "filter", "pause", "clear", "expand"]) $(id).disabled = !canSubscribe;
  $("pub-send").disabled = !canPublish;
  $("pub-help").textContent = canPublish
    ? `Any JSON value, sent as written; Ctrl+Enter publishes. This token may publish: ${who.publish.join(", ")}.`
    : "This token may not publish any event.";

  events.reset();
  tasks.reset();
  rates.reset();
  statusView.reset();
  clientsView.reset();
  queuesView.reset();
  $("banner").hidden = true;

  const taskAllowed = who.subscribe.some((p) => allows(p, "task.*"));
  $("tasks-empty").textContent = taskAllowed
    ? "No task yet: tasks appear here when their next line arrives."
    : "This token may not subscribe to task.*, so no task shows here.";
  if (canSubscribe) {
    $("watch").value = who.subscribe.join(", ");
    live = new Live(session.config.broadcast_url, session.auth, who.subscribe, taskAllowed);
    live.connect();
  } else {
    $("watch").value = "";
    setConn("idle", "Live events off: this token may not subscribe");
  }
  if (who.admin) statusView.start();
  selectTab(canSubscribe || !who.admin ? "events" : "clients", false);
  rates.start();

  clearTimeout(session.expiryTimer);
  if (who.expires) {
    const ms = new Date(who.expires).getTime() - Date.now();
    // setTimeout's delay is a 32-bit number: a far expiry is not timed.
    if (ms < 2 ** 31) session.expiryTimer = setTimeout(expired, Math.max(0, ms));
  }
}

function stop() {
  if (live) live.stop();
  live = null;
  statusView.stop();
  clientsView.stop();
  queuesView.stop();
  rates.stop();
  clearTimeout(session.expiryTimer);
}

function expired() {
  renderWho();
  setConn("closed", "Token expired: log out and log in with a new one");
}

function renderWho() {
  const who = session.who;
  const parts = [];
  const strong = (t) => el("strong", null, t);
  const list = (xs) => (xs.length ? xs.join(", ") : "nothing");
  parts.push(strong(who.sub || "unnamed"));
  parts.push(` · subscribe: ${list(who.subscribe)} · publish: ${list(who.publish)}`);
  if (who.admin) parts.push(" · ", strong("admin"));
  if (who.expires) {
    const exp = new Date(who.expires);
    parts.push(exp <= new Date() ? " · expired" : ` · expires ${exp.toLocaleTimeString()}`);
  }
  $("who-text").replaceChildren(...parts);
}

// ---- Tabs

const TABS = ["events", "tasks", "clients", "queues", "status"];

function selectTab(name, focus = true) {
  for (const t of TABS) {
    const tab = $("tab-" + t);
    const on = t === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $("view-" + t).hidden = !on;
    if (on && focus) tab.focus();
  }
  if (name === "clients") clientsView.start();
  else clientsView.stop();
  if (name === "queues") queuesView.start();
  else queuesView.stop();
  if (name === "status") statusView.draw();
}

function visibleTabs() {
  return TABS.filter((t) => !$("tab-" + t).hidden);
}

// ---- The live connection: init with the watched names, resume from the
// last ID after a drop, reconnect with backoff and jitter.

class Live {
  constructor(url, auth, watch, taskAllowed) {
    this.url = url;
    this.auth = auth;
    this.watch = watch; // what the user watches: shown in the event list
    this.taskAllowed = taskAllowed; // also subscribe task.* for the Tasks view
    this.last = ""; // the since of the next init (README's rule)
    this.position = "";
    this.pending = 0; // replayed events still to come
    this.attempt = 0;
    this.ws = null;
    this.ready = false; // init answered OK
    this.timer = 0;
    this.countdown = 0;
    this.stopped = false;
    this.replies = []; // subscribe and unsubscribe requests awaiting their reply
  }

  // subscription is what the connection subscribes to.
  subscription() {
    const names = [...this.watch];
    if (this.taskAllowed && !names.some((p) => allows(p, "task.*"))) names.push("task.*");
    return names;
  }

  connect() {
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    $("reconnect-bar").hidden = true;
    if (this.stopped) return;
    setConn("connecting", this.attempt === 0 ? "Connecting…" : `Reconnecting (retry ${this.attempt})…`);
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      setConn("closed", `Cannot open ${this.url}: ${err.message}`);
      return;
    }
    this.ws = ws;
    this.ready = false;
    this.resuming = this.last !== "";
    ws.onopen = () => {
      ws.send(JSON.stringify({ authentication: this.auth, events: this.subscription(), since: this.last }));
    };
    ws.onmessage = (m) => {
      if (ws === this.ws) this.message(m.data);
    };
    ws.onclose = (e) => {
      if (ws === this.ws) this.closed(e);
    };
  }

  message(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    switch (msg.type) {
      case "event":
        received(msg);
        this.last = msg.id;
        if (this.pending > 0 && --this.pending === 0) this.last = this.position;
        return;
      case "init":
        if (msg.code !== "OK") {
          this.refused(msg);
          return;
        }
        this.ready = true;
        this.attempt = 0;
        setConn("open", `Connected: ${this.watch.join(", ")}`);
        if (this.resuming && msg.recovered === false) missed();
        this.position = msg.id ?? "";
        this.pending = msg.replayed ?? 0;
        if (this.pending === 0 && this.position) this.last = this.position;
        return;
      case "subscribe":
      case "unsubscribe": {
        const i = this.replies.findIndex((r) => r.type === msg.type);
        if (i >= 0) this.replies.splice(i, 1)[0].resolve(msg);
        return;
      }
      case "error":
        setConn("open", `Connected; the server said ${msg.code}${msg.message ? ": " + msg.message : ""}`);
        return;
    }
  }

  request(msg) {
    return new Promise((resolve, reject) => {
      if (!this.ws || !this.ready) {
        reject(new Error("not connected"));
        return;
      }
      this.replies.push({ type: msg.type, resolve, reject });
      this.ws.send(JSON.stringify(msg));
    });
  }

  // setWatch changes what is watched: on an open connection the new names
  // are subscribed before the old ones are dropped, so nothing watched in
  // both is missed; otherwise the next init uses them.
  async setWatch(watch) {
    const before = this.subscription();
    const oldWatch = this.watch;
    this.watch = watch;
    const after = this.subscription();
    if (!this.ws || !this.ready) {
      if (this.ws) this.ws.close(1000);
      this.ws = null;
      this.attempt = 0;
      this.connect();
      return { code: "OK" };
    }
    const add = after.filter((n) => !before.includes(n));
    const remove = before.filter((n) => !after.includes(n));
    if (add.length > 0) {
      const r = await this.request({ type: "subscribe", events: add });
      if (r.code !== "OK") {
        this.watch = oldWatch;
        return r;
      }
    }
    if (remove.length > 0) await this.request({ type: "unsubscribe", events: remove });
    setConn("open", `Connected: ${this.watch.join(", ")}`);
    return { code: "OK" };
  }

  refused(msg) {
    // The token no longer allows the init (revoked, expired, or no longer
    // allowed these names): retrying would not help.
    this.stopped = true;
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
    setConn("closed", `Refused: ${msg.code}${msg.message ? " (" + msg.message + ")" : ""}`);
    $("watch-error").textContent = `${msg.code}: ${msg.message ?? "the server refused this subscription"}`;
  }

  closed(e) {
    this.ws = null;
    this.ready = false;
    for (const r of this.replies.splice(0)) r.reject(new Error("connection closed"));
    if (this.stopped) return;
    const why = e.reason ? `${e.code} ${e.reason}` : `code ${e.code}`;
    if (e.code === 4001 || (e.code === 4003 && e.reason === "token revoked")) {
      setConn("closed", `Disconnected (${why}): log out and log in again`);
      return;
    }
    if (e.code === 4002) {
      // An admin closed this connection on purpose: do not come back
      // unasked.
      setConn("closed", `Disconnected: closed by admin (${e.code})`);
      this.offerReconnect(`Closed by an admin (${e.code} ${e.reason}).`, 0);
      return;
    }
    // Exponential backoff up to 30 s, with full jitter so that consoles
    // cut off together do not come back together.
    const delay = 250 + Math.random() * Math.min(30000, 500 * 2 ** this.attempt);
    this.attempt++;
    setConn("connecting", `Disconnected (${why}); reconnecting…`);
    this.offerReconnect(`Connection lost (${why}).`, delay);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  offerReconnect(text, delay) {
    const bar = $("reconnect-bar");
    const show = () => {
      const left = Math.ceil((due - Date.now()) / 1000);
      $("reconnect-text").textContent = delay > 0 ? `${text} Reconnecting in ${Math.max(0, left)} s (retry ${this.attempt}).` : text;
    };
    const due = Date.now() + delay;
    show();
    clearInterval(this.countdown);
    if (delay > 0) this.countdown = setInterval(show, 500);
    bar.hidden = false;
  }

  reconnectNow() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    $("reconnect-bar").hidden = true;
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
  }
}

// received takes one event from the connection.
function received(msg) {
  const ev = { id: msg.id ?? "", name: msg.event, data: msg.data, time: new Date() };
  if (live && live.watch.some((p) => matches(p, ev.name))) {
    events.add(ev);
    rates.count(ev.name);
  }
  if (ev.name.startsWith("task.")) tasks.update(ev);
}

// missed is called when a resume was not recovered.
function missed() {
  $("banner").hidden = false;
  events.add({ gap: true, time: new Date() });
}

// ---- The event list: newest first, at most MAX_EVENTS rows.

const events = {
  store: [], // oldest first, at most MAX_EVENTS
  gaps: 0, // gap marks in store
  held: [], // arrived while paused
  heldDropped: 0,
  queue: [], // stored, not yet drawn
  frame: 0, // requestAnimationFrame's ID while a draw is due
  timer: 0, // setTimeout's ID while a draw waits for DRAW_MS
  drawn: 0, // when the last draw was
  paused: false,
  filter: "",
  expand: false,
  countsTimer: 0,

  reset() {
    this.store = [];
    this.gaps = 0;
    this.held = [];
    this.heldDropped = 0;
    this.queue = [];
    $("events").replaceChildren();
    this.counts();
  },

  add(ev) {
    if (this.paused) {
      this.held.push(ev);
      if (this.held.length > MAX_EVENTS) {
        this.held.shift();
        this.heldDropped++;
      }
      this.countsSoon();
      return;
    }
    this.store.push(ev);
    if (ev.gap) this.gaps++;
    if (this.store.length > MAX_EVENTS) this.forget(this.store.shift());
    if (this.shows(ev)) {
      this.queue.push(ev);
      this.drawSoon();
    } else {
      this.countsSoon();
    }
  },

  forget(ev) {
    ev.el = null;
    if (ev.gap) this.gaps--;
  },

  shows(ev) {
    if (ev.gap || this.filter === "") return true;
    if (ev.search === undefined) ev.search = (ev.name + " " + dataText(ev)).toLowerCase();
    return ev.search.includes(this.filter);
  },

  // drawSoon draws in the next animation frame, and at most every
  // DRAW_MS: at 200 events/s that is 20 rows at a time, with one style,
  // layout and paint for them, rather than a few rows in every frame.
  drawSoon() {
    if (this.frame || this.timer) return;
    const wait = DRAW_MS - (performance.now() - this.drawn);
    if (wait <= 0) {
      this.frame = requestAnimationFrame(() => this.draw());
    } else {
      this.timer = setTimeout(() => {
        this.timer = 0;
        this.frame = requestAnimationFrame(() => this.draw());
      }, wait);
    }
  },

  // draw adds the queued events at the top, in one go, and trims the end.
  draw() {
    this.frame = 0;
    this.drawn = performance.now();
    const list = $("events");
    const q = this.queue.splice(0).slice(-MAX_EVENTS);
    const frag = document.createDocumentFragment();
    for (let i = q.length - 1; i >= 0; i--) frag.append(row(q[i]));
    list.prepend(frag);
    while (list.childElementCount > MAX_EVENTS) list.lastElementChild.remove();
    this.counts();
  },

  // redraw draws the whole list anew (filter, resume, expand).
  redraw() {
    cancelAnimationFrame(this.frame);
    clearTimeout(this.timer);
    this.frame = this.timer = 0;
    this.queue = [];
    const frag = document.createDocumentFragment();
    let n = 0;
    for (let i = this.store.length - 1; i >= 0 && n < MAX_EVENTS; i--) {
      const ev = this.store[i];
      if (!this.shows(ev)) continue;
      frag.append(row(ev));
      n++;
    }
    $("events").replaceChildren(frag);
    this.counts();
  },

  pause(on) {
    this.paused = on;
    $("pause").setAttribute("aria-pressed", String(on));
    $("pause").textContent = on ? "Resume" : "Pause";
    if (!on && this.held.length > 0) {
      for (const ev of this.held.splice(0)) {
        this.store.push(ev);
        if (ev.gap) this.gaps++;
      }
      for (const ev of this.store.splice(0, Math.max(0, this.store.length - MAX_EVENTS))) this.forget(ev);
      this.heldDropped = 0;
      this.redraw();
    }
    this.counts();
  },

  clear() {
    this.reset();
  },

  countsSoon() {
    if (!this.countsTimer) this.countsTimer = setTimeout(() => this.counts(), 250);
  },

  counts() {
    clearTimeout(this.countsTimer);
    this.countsTimer = 0;
    const stored = this.store.length - this.gaps;
    let text = `${stored.toLocaleString()} event${stored === 1 ? "" : "s"} kept (newest ${MAX_EVENTS.toLocaleString()})`;
    if (this.filter) text += ` · ${$("events").childElementCount.toLocaleString()} match the filter`;
    if (this.paused) {
      text += ` · paused: ${this.held.length.toLocaleString()} new`;
      if (this.heldDropped) text += ` (${this.heldDropped.toLocaleString()} older dropped)`;
    }
    $("counts").textContent = text;
  },
};

function dataText(ev) {
  if (ev.text === undefined) ev.text = ev.data === undefined ? "null" : JSON.stringify(ev.data);
  return ev.text;
}

// row is the list item of an event, made once and kept while the event is.
function row(ev) {
  if (ev.el) return ev.el;
  if (ev.gap) {
    ev.el = el("li", { class: "gap" }, `${clock(ev.time)} — some events were missed here: the server could not replay them all.`);
    return ev.el;
  }
  const text = dataText(ev);
  const preview = text.length > PREVIEW_CHARS ? text.slice(0, PREVIEW_CHARS) + "…" : text;
  const summary = el(
    "summary",
    { tabIndex: -1 },
    el("span", { class: "ev-id" }, ev.id),
    el("time", { class: "ev-time", dateTime: ev.time.toISOString() }, clock(ev.time)),
    el("span", { class: "ev-name" }, ev.name),
    el("code", { class: "ev-preview" }, preview),
  );
  const details = el("details", null, summary);
  ev.el = el("li", { class: "ev" }, details);
  ev.el.dataset.id = ev.id;
  ev.el.ev = ev;
  if (events.expand) {
    details.open = true;
    fillData(details, ev);
  }
  return ev.el;
}

function fillData(details, ev) {
  if (details.querySelector("pre")) return;
  let pretty = ev.data === undefined ? "null" : JSON.stringify(ev.data, null, 2);
  if (pretty.length > PRETTY_CHARS) pretty = pretty.slice(0, PRETTY_CHARS) + "\n… (cut: " + pretty.length.toLocaleString() + " characters in all)";
  details.append(el("pre", { class: "ev-data" }, pretty));
}

// ---- Events per second, per name, over the last minute.

const rates = {
  names: new Map(), // name -> { counts: number[RATE_SECONDS], sec }
  timer: 0,

  reset() {
    this.names.clear();
    $("rates").replaceChildren();
  },

  count(name) {
    const sec = Math.floor(Date.now() / 1000);
    let r = this.names.get(name);
    if (!r) {
      r = { counts: new Array(RATE_SECONDS).fill(0), sec, el: null };
      this.names.set(name, r);
    }
    this.advance(r, sec);
    r.counts[sec % RATE_SECONDS]++;
  },

  advance(r, sec) {
    for (let s = Math.max(r.sec + 1, sec - RATE_SECONDS + 1); s <= sec; s++) r.counts[s % RATE_SECONDS] = 0;
    r.sec = Math.max(r.sec, sec);
  },

  start() {
    this.stop();
    this.timer = setInterval(() => this.draw(), 1000);
  },

  stop() {
    clearInterval(this.timer);
  },

  draw() {
    const sec = Math.floor(Date.now() / 1000);
    const rows = [];
    for (const [name, r] of this.names) {
      this.advance(r, sec);
      // The last RATE_SECONDS complete seconds, oldest first.
      const series = [];
      for (let s = sec - RATE_SECONDS; s < sec; s++) series.push(r.counts[(s + RATE_SECONDS) % RATE_SECONDS]);
      const total = series.reduce((a, b) => a + b, 0) + r.counts[sec % RATE_SECONDS];
      if (total === 0) {
        this.names.delete(name);
        continue;
      }
      rows.push({ name, r, series, total });
    }
    rows.sort((a, b) => b.total - a.total || (a.name < b.name ? -1 : 1));
    const items = rows.slice(0, RATE_NAMES).map(({ name, r, series }) => {
      if (!r.el) {
        const poly = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
        const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
        svg.setAttribute("viewBox", `0 0 ${RATE_SECONDS - 1} 20`);
        svg.setAttribute("preserveAspectRatio", "none");
        svg.setAttribute("aria-hidden", "true");
        svg.append(poly);
        r.el = el("li", null, el("span", { class: "rate-name", title: name }, name), svg, el("span", { class: "rate-value" }));
        r.poly = poly;
      }
      const max = Math.max(1, ...series);
      r.poly.setAttribute("points", series.map((v, i) => `${i},${(19 - (v / max) * 18).toFixed(1)}`).join(" "));
      const now = series[series.length - 1];
      r.el.querySelector(".rate-value").textContent = rate(now);
      r.el.setAttribute("aria-label", `${name}: ${rate(now)} events per second, at most ${max} in the last minute`);
      return r.el;
    });
    $("rates").replaceChildren(...items);
    if (items.length === 0) $("rates").append(el("li", { class: "help" }, "No events in the last minute."));
  },
};

// ---- Tasks: events task.<id> with data {title, state, progress, message}.

const tasks = {
  byId: new Map(),

  reset() {
    this.byId.clear();
    $("tasks").replaceChildren();
    $("tasks-empty").hidden = false;
  },

  update(ev) {
    const id = ev.name.slice("task.".length);
    const d = ev.data && typeof ev.data === "object" ? ev.data : { message: String(ev.data) };
    let t = this.byId.get(id);
    if (!t) {
      t = this.create(id);
      this.byId.set(id, t);
      $("tasks").prepend(t.li);
      $("tasks-empty").hidden = true;
      this.trim();
    }
    if (typeof d.title === "string" && d.title !== "") t.title.textContent = d.title;
    if (typeof d.progress === "number" && Number.isFinite(d.progress)) t.progressValue = Math.min(1, Math.max(0, d.progress));
    const state = ["running", "done", "failed"].includes(d.state) ? d.state : t.state;
    t.state = state;
    if (state === "done") t.progressValue = 1;
    if (t.progressValue === null && state !== "running") t.progressValue = 0;
    if (t.progressValue === null) {
      t.progress.removeAttribute("value"); // indeterminate until a line says how far
    } else {
      t.progress.value = t.progressValue;
    }
    const pct = t.progressValue === null ? "" : ` ${Math.round(t.progressValue * 100)}%`;
    t.mark.className = "task-state " + state;
    t.mark.textContent = state === "done" ? "✓ done" : state === "failed" ? `✗ failed${pct}` : `running${pct}`;
    t.li.className = state;
    if (typeof d.message === "string" && d.message !== "") t.message.textContent = d.message;
    t.meta.textContent = `${ev.name} · updated ${clock(ev.time)}`;
  },

  create(id) {
    const titleId = "task-title-" + id;
    const t = {
      title: el("span", { class: "task-title", id: titleId }, id),
      mark: el("span", { class: "task-state running" }, "running"),
      progress: el("progress", { max: 1 }),
      message: el("p", { class: "task-message" }),
      meta: el("span", { class: "task-meta" }),
      progressValue: null,
      state: "running",
    };
    t.progress.setAttribute("aria-labelledby", titleId);
    t.li = el("li", { class: "running" }, t.title, t.mark, t.progress, t.message, t.meta);
    t.li.dataset.task = id;
    return t;
  },

  trim() {
    if (this.byId.size <= MAX_TASKS) return;
    // Oldest first: a Map iterates in insertion order.
    for (const [id, t] of this.byId) {
      if (this.byId.size <= MAX_TASKS) break;
      if (t.state !== "running" || this.byId.size > 2 * MAX_TASKS) {
        t.li.remove();
        this.byId.delete(id);
      }
    }
  },
};

// ---- Clients (admin): GET /admin/clients every POLL_MS while shown.

const clientsView = {
  timer: 0,
  rows: new Map(), // id -> tr

  reset() {
    this.stop();
    this.rows.clear();
    $("clients").tBodies[0].replaceChildren();
    $("clients-info").textContent = "";
    $("clients-error").textContent = "";
  },

  start() {
    if (this.timer || !session.who?.admin) return;
    this.refresh();
    this.timer = setInterval(() => this.refresh(), POLL_MS);
  },

  stop() {
    clearInterval(this.timer);
    this.timer = 0;
  },

  async refresh() {
    let r;
    try {
      r = await api("GET", "admin/clients");
    } catch (err) {
      $("clients-error").textContent = `Cannot reach the server: ${err.message}`;
      return;
    }
    if (r.status !== 200 || !r.json) {
      $("clients-error").textContent = `${r.json?.code ?? "HTTP " + r.status}: ${r.json?.message ?? ""}`;
      return;
    }
    $("clients-error").textContent = "";
    this.draw(r.json.clients ?? []);
  },

  draw(clients) {
    const body = $("clients").tBodies[0];
    const seen = new Set();
    const ordered = [];
    for (const c of clients) {
      seen.add(c.id);
      let tr = this.rows.get(c.id);
      if (!tr) {
        tr = this.makeRow(c.id);
        this.rows.set(c.id, tr);
      }
      const cells = tr.cells;
      const at = new Date(c.connected_since);
      cells[1].textContent = c.remote;
      cells[2].textContent = c.user_agent || "–";
      cells[3].textContent = c.transport;
      cells[4].textContent = (c.subscriptions ?? []).join(", ") || "–";
      cells[5].textContent = `${c.queue_depth} / ${bytes(c.queued_bytes)}`;
      cells[6].textContent = c.messages_sent.toLocaleString();
      cells[7].textContent = `${at.toLocaleTimeString()} (${since(at)})`;
      cells[7].title = at.toISOString();
      ordered.push(tr);
    }
    for (const [id, tr] of this.rows) {
      if (seen.has(id)) continue;
      const hadFocus = tr.contains(document.activeElement);
      tr.remove();
      this.rows.delete(id);
      if (hadFocus) $("clients-info").focus();
    }
    // Append in order; rows already in place are not moved, so focus and
    // a pressed button survive the refresh.
    ordered.forEach((tr, i) => {
      if (body.rows[i] !== tr) body.insertBefore(tr, body.rows[i] ?? null);
    });
    const n = clients.length;
    $("clients-info").textContent = `${n} client${n === 1 ? "" : "s"} connected · updated ${new Date().toLocaleTimeString()}`;
  },

  makeRow(id) {
    const button = el("button", { type: "button", class: "close-client" }, "Close");
    button.setAttribute("aria-label", `Close client ${id}`);
    button.addEventListener("click", () => this.close(id, button));
    const td = (cls) => el("td", cls ? { class: cls } : null);
    const tr = el("tr", null, el("td", { class: "num" }, String(id)), td("mono"), td("ua"), td(), td("subs"), td("num"), td("num"), td(), el("td", null, button));
    tr.dataset.client = String(id);
    return tr;
  },

  async close(id, button) {
    button.disabled = true;
    let r;
    try {
      r = await api("POST", `admin/clients/${encodeURIComponent(id)}/close`);
    } catch (err) {
      $("clients-error").textContent = `Cannot reach the server: ${err.message}`;
      button.disabled = false;
      return;
    }
    if (r.status === 200 && r.json?.code === "OK") {
      $("clients-info").textContent = `Client ${id} closed.`;
    } else {
      $("clients-error").textContent = `Client ${id}: ${r.json?.code ?? "HTTP " + r.status}${r.json?.message ? " — " + r.json.message : ""}`;
      button.disabled = false;
    }
    await this.refresh();
  },
};

// ---- Queues (admin): GET /admin/queues every POLL_MS while shown, and
// on demand (Refresh).

const queuesView = {
  timer: 0,
  rows: new Map(), // name -> tr
  loading: false,

  reset() {
    this.stop();
    this.rows.clear();
    $("queues").tBodies[0].replaceChildren();
    $("queues-info").textContent = "";
    $("queues-error").textContent = "";
    $("queues-empty").hidden = true;
  },

  start() {
    if (this.timer || !session.who?.admin) return;
    this.refresh();
    this.timer = setInterval(() => this.refresh(), POLL_MS);
  },

  stop() {
    clearInterval(this.timer);
    this.timer = 0;
  },

  async refresh() {
    if (this.loading) return; // a slow answer is not asked for twice
    this.loading = true;
    let r;
    try {
      r = await api("GET", "admin/queues");
    } catch (err) {
      $("queues-error").textContent = `Cannot reach the server: ${err.message}`;
      return;
    } finally {
      this.loading = false;
    }
    if (r.status !== 200 || !r.json) {
      $("queues-error").textContent = `${r.json?.code ?? "HTTP " + r.status}: ${r.json?.message ?? ""}`;
      return;
    }
    $("queues-error").textContent = "";
    this.draw(r.json.queues ?? []);
  },

  draw(queues) {
    const body = $("queues").tBodies[0];
    const seen = new Set();
    const ordered = [];
    for (const q of queues) {
      seen.add(q.name);
      let tr = this.rows.get(q.name);
      if (!tr) {
        tr = this.makeRow(q.name);
        this.rows.set(q.name, tr);
      }
      const c = tr.cells;
      const n = (x) => (Number.isFinite(x) ? x.toLocaleString() : "–");
      c[1].textContent = n(q.depth);
      c[2].textContent = q.depth > 0 ? duration(q.oldest_waiting_seconds) : "–";
      // Tasks wait and no worker is there to take them.
      const stuck = q.depth > 0 && q.workers === 0;
      c[1].classList.toggle("late", stuck);
      c[2].classList.toggle("late", stuck);
      c[1].title = c[2].title = stuck ? "Tasks wait and no worker takes from this queue" : "";
      c[3].textContent = q.working > 0 ? `${n(q.offering)} / ${n(q.working)} working` : n(q.offering);
      c[4].textContent = n(q.workers);
      c[5].textContent = n(q.offered);
      c[6].textContent = n(q.reoffered);
      c[7].textContent = n(q.assigned);
      c[8].textContent = n(q.rejected);
      c[9].textContent = n(q.timed_out);
      c[10].textContent = n(q.added);
      tr.dataset.depth = String(q.depth);
      ordered.push(tr);
    }
    for (const [name, tr] of this.rows) {
      if (seen.has(name)) continue;
      tr.remove();
      this.rows.delete(name);
    }
    ordered.forEach((tr, i) => {
      if (body.rows[i] !== tr) body.insertBefore(tr, body.rows[i] ?? null);
    });
    const k = queues.length;
    $("queues-empty").hidden = k > 0;
    $("queues-info").textContent = `${k} queue${k === 1 ? "" : "s"} · updated ${new Date().toLocaleTimeString()}`;
  },

  makeRow(name) {
    const cells = [el("th", { scope: "row", class: "queue-name" }, name)];
    for (let i = 1; i <= 10; i++) cells.push(el("td", { class: "num" }));
    const tr = el("tr", null, ...cells);
    tr.dataset.queue = name;
    return tr;
  },
};

// ---- Status (admin): GET /admin/status every POLL_MS, rates from the
// differences, and a chart of the last minutes.

const statusView = {
  timer: 0,
  samples: [], // { t, published, deliveries, eps, dps }

  reset() {
    this.samples = [];
    $("st-chart").replaceChildren();
  },

  start() {
    this.stop();
    this.refresh();
    this.timer = setInterval(() => this.refresh(), POLL_MS);
  },

  stop() {
    clearInterval(this.timer);
    this.timer = 0;
  },

  async refresh() {
    let r;
    try {
      r = await api("GET", "admin/status");
    } catch (err) {
      $("status-error").textContent = `Cannot reach the server: ${err.message}`;
      return;
    }
    if (r.status !== 200 || !r.json) {
      $("status-error").textContent = `${r.json?.code ?? "HTTP " + r.status}: ${r.json?.message ?? ""}`;
      return;
    }
    $("status-error").textContent = "";
    const s = r.json;
    const t = Date.now();
    const prev = this.samples[this.samples.length - 1];
    const sample = { t, published: s.events_published, deliveries: s.deliveries, eps: NaN, dps: NaN };
    if (prev && s.events_published >= prev.published && s.started === prev.started) {
      const dt = (t - prev.t) / 1000;
      sample.eps = (s.events_published - prev.published) / dt;
      sample.dps = (s.deliveries - prev.deliveries) / dt;
    }
    sample.started = s.started;
    this.samples.push(sample);
    while (this.samples.length > 0 && this.samples[0].t < t - STATUS_WINDOW_MS) this.samples.shift();

    $("st-uptime").textContent = duration(s.uptime_seconds);
    $("st-subscribers").textContent = s.subscribers.toLocaleString();
    $("st-eps").textContent = rate(sample.eps);
    $("st-dps").textContent = rate(sample.dps);
    $("st-published").textContent = s.events_published.toLocaleString();
    $("st-connections").textContent = s.connections_total.toLocaleString();
    $("st-version").textContent = s.version;
    if (!$("view-status").hidden) this.draw();
  },

  draw() {
    const svg = $("st-chart");
    const W = 600, H = 160, L = 44, R = 8, T = 10, B = 22;
    const pts = this.samples.filter((s) => Number.isFinite(s.eps));
    const now = Date.now();
    const span = Math.max(60000, Math.min(STATUS_WINDOW_MS, pts.length ? now - pts[0].t : 0));
    const top = niceMax(Math.max(1, ...pts.map((s) => Math.max(s.eps, s.dps))));
    const x = (t) => L + ((t - (now - span)) / span) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    const ns = "http://www.w3.org/2000/svg";
    const make = (tag, attrs, text) => {
      const e = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (text !== undefined) e.textContent = text;
      return e;
    };
    const parts = [];
    for (const v of [0, top / 2, top]) {
      parts.push(make("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      parts.push(make("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, rate(v)));
    }
    const minutes = Math.round(span / 60000);
    parts.push(make("text", { x: L, y: H - 6 }, `−${minutes} min`));
    parts.push(make("text", { x: W - R, y: H - 6, "text-anchor": "end" }, "now"));
    const line = (key, cls) => make("polyline", { class: cls, points: pts.map((s) => `${x(s.t).toFixed(1)},${y(s[key]).toFixed(1)}`).join(" ") });
    parts.push(line("eps", "eps"), line("dps", "dps"));
    svg.replaceChildren(...parts);
    $("st-window").textContent = `${minutes} minute${minutes === 1 ? "" : "s"}`;
    const last = pts[pts.length - 1];
    svg.setAttribute("aria-label", last ? `Chart: now ${rate(last.eps)} events/s and ${rate(last.dps)} deliveries/s` : "Chart: no data yet");
  },
};

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// ---- Publish: POST /event with the data exactly as written.

async function publish(e) {
  e.preventDefault();
  const name = $("pub-name").value.trim();
  const text = $("pub-data").value.trim();
  const result = $("pub-result");
  $("pub-name").setAttribute("aria-invalid", "false");
  $("pub-data").setAttribute("aria-invalid", "false");
  $("pub-error").textContent = "";
  if (name === "") {
    $("pub-error").textContent = "Give the event a name.";
    $("pub-name").setAttribute("aria-invalid", "true");
    $("pub-name").focus();
    return;
  }
  if (text !== "") {
    try {
      JSON.parse(text);
    } catch (err) {
      $("pub-error").textContent = `Data (JSON) is not valid JSON: ${err.message}`;
      $("pub-data").setAttribute("aria-invalid", "true");
      $("pub-data").focus();
      return;
    }
  }
  const body = `{"event":${JSON.stringify(name)}${text === "" ? "" : `,"data":${text}`}}`;
  $("pub-send").disabled = true;
  result.className = "";
  result.textContent = "Publishing…";
  try {
    const r = await api("POST", "event", body);
    const code = r.json?.code ?? `HTTP ${r.status}`;
    if (code === "OK") {
      result.className = "ok";
      result.textContent = `code: OK, id: ${r.json.id}${r.json.duplicate ? " (duplicate)" : ""}`;
    } else {
      result.className = "bad";
      result.textContent = `code: ${code}${r.json?.message ? " — " + r.json.message : ""}`;
    }
  } catch (err) {
    result.className = "bad";
    result.textContent = `Cannot reach the server: ${err.message}`;
  } finally {
    $("pub-send").disabled = false;
  }
}

// ---- Wiring

async function applyWatch(e) {
  e.preventDefault();
  const names = parseNames($("watch").value);
  const error = $("watch-error");
  error.textContent = "";
  $("watch").setAttribute("aria-invalid", "false");
  const fail = (text) => {
    error.textContent = text;
    $("watch").setAttribute("aria-invalid", "true");
    $("watch").focus();
  };
  if (names.length === 0) return fail("Name at least one event or pattern.");
  const allowed = session.who.subscribe;
  const refused = names.filter((n) => !allowed.some((p) => allows(p, n)));
  if (refused.length > 0) {
    return fail(`This token may not subscribe to ${refused.join(", ")}; it may subscribe to ${allowed.join(", ")}.`);
  }
  if (!live) return;
  live.stopped = false;
  try {
    const r = await live.setWatch(names);
    if (r.code !== "OK") fail(`${r.code}: ${r.message ?? "refused"}`);
    else $("watch").value = names.join(", ");
  } catch (err) {
    fail(`Not applied: ${err.message}; it will be used when the connection is back.`);
  }
}

function wire() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    login($("token").value);
  });
  $("logout").addEventListener("click", logout);
  $("watch-form").addEventListener("submit", applyWatch);

  let filterTimer = 0;
  $("filter").addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      events.filter = $("filter").value.trim().toLowerCase();
      events.redraw();
    }, 120);
  });
  $("pause").addEventListener("click", () => events.pause(!events.paused));
  $("clear").addEventListener("click", () => events.clear());
  $("expand").addEventListener("change", () => {
    events.expand = $("expand").checked;
    for (const d of $("events").querySelectorAll("details")) {
      d.open = events.expand;
    }
  });
  // Data is pretty-printed when a row is first opened.
  $("events").addEventListener(
    "toggle",
    (e) => {
      const d = e.target;
      if (d.open && d.parentElement?.ev) fillData(d, d.parentElement.ev);
    },
    true,
  );
  // The list is one stop in the tab order; arrow keys move between rows.
  $("events").tabIndex = 0;
  $("events").addEventListener("keydown", (e) => {
    const rows = [...$("events").querySelectorAll("li.ev > details > summary")];
    if (rows.length === 0) return;
    const i = rows.indexOf(document.activeElement);
    let next = -1;
    if (e.key === "ArrowDown") next = i < 0 ? 0 : Math.min(rows.length - 1, i + 1);
    else if (e.key === "ArrowUp") next = i < 0 ? 0 : Math.max(0, i - 1);
    else if (e.key === "Home") next = 0;
    else if (e.key === "End") next = rows.length - 1;
    if (next < 0) return;
    e.preventDefault();
    rows[next].focus();
  });
  $("banner-close").addEventListener("click", () => {
    $("banner").hidden = true;
    $("filter").focus();
  });
  $("reconnect-now").addEventListener("click", () => live?.reconnectNow());

  $("publish-form").addEventListener("submit", publish);
  $("pub-data").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      $("publish-form").requestSubmit();
    }
  });

  for (const t of TABS) $("tab-" + t).addEventListener("click", () => selectTab(t));
  $("app").querySelector('[role="tablist"]').addEventListener("keydown", (e) => {
    const tabs = visibleTabs();
    const i = tabs.indexOf(document.activeElement.id.replace("tab-", ""));
    if (i < 0) return;
    let j = -1;
    if (e.key === "ArrowRight") j = (i + 1) % tabs.length;
    else if (e.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
    else if (e.key === "Home") j = 0;
    else if (e.key === "End") j = tabs.length - 1;
    if (j < 0) return;
    e.preventDefault();
    selectTab(tabs[j]);
  });
  $("clients-info").tabIndex = -1;
  $("queues-refresh").addEventListener("click", () => queuesView.refresh());
}

wire();
const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) {
  login(saved);
} else {
  $("token").focus();
}
