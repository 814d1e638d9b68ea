// Browser test of examples/queue (#15), run by node's test runner: Debian's
// Chromium, headless, driven by playwright-core, against a real eventsrv
// and the example's backend, which cmd/eventsrv/queue_example_test.go
// builds and starts:
//
//   go test -run TestExampleQueuePage -v ./cmd/eventsrv
//
// playwright-core is the one console/e2e installs (npm ci --prefix
// console/e2e); PLAYWRIGHT_CORE names its folder.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this test through go test -run TestExampleQueuePage ./cmd/eventsrv`);
  return v;
};
const PAGE = env("PAGE_URL"); // the example's backend
const LISTEN = env("EVENTSRV_LISTEN_URL"); // to add tasks
const TOKEN = env("EVENTSRV_TOKEN");
const METRICS = env("EVENTSRV_METRICS_URL");
const QUEUE = env("QUEUE");
const OFFER_TIMEOUT_MS = Number(env("OFFER_TIMEOUT_MS"));
const SHOTS = env("SCREENSHOTS");
mkdirSync(SHOTS, { recursive: true });
const { chromium } = await import(pathToFileURL(join(env("PLAYWRIGHT_CORE"), "index.mjs")).href);

const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

let browser;
before(async () => {
  browser = await chromium.launch({ executablePath: env("CHROMIUM"), headless: true, args: FLAGS });
});
after(async () => {
  await browser?.close();
});

// open loads the page for an operator in a context of its own, and records
// its errors (checked at the end).
async function open(operator) {
  const context = await browser.newContext({ viewport: { width: 900, height: 900 } });
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") page.problems.push(`console error: ${m.text()}`);
  });
  await page.goto(`${PAGE}/?operator=${operator}`);
  page.operator = operator;
  return page;
}

// add posts a task to the queue, as a backend would.
async function add(data, query = "") {
  const r = await fetch(`${LISTEN}/queue/${encodeURIComponent(QUEUE)}${query}`, {
    method: "POST",
    headers: { Authorization: "Basic " + TOKEN },
    body: JSON.stringify(data),
  });
  const body = await r.json();
  assert.equal(body.code, "OK", JSON.stringify(body));
  return body.id;
}

// workers waits until the queue has n live workers (the pages' EventSources).
async function workers(n) {
  const want = `eventsrv_queue_workers{queue="${QUEUE}"} ${n}\n`;
  for (let i = 0; i < 400; i++) {
    const text = await (await fetch(METRICS)).text();
    if (text.includes(want)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`the queue never had ${n} workers`);
}

const task = (page, id, state) => page.locator(`li.task[data-id="${id}"]` + (state ? `[data-state="${state}"]` : ""));

// offeredTo waits until one of pages shows the task as offered and returns
// [that page, the other].
async function offeredTo(pages, id) {
  const i = await Promise.any(pages.map((p, i) => task(p, id, "offered").waitFor({ timeout: 10_000 }).then(() => i)));
  return [pages[i], pages[1 - i]];
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `queue-${name}.png`), fullPage: true });
}

test("the QueueTasks flow: take-free, offers, reject, assign, done, forced, re-offer", async () => {
  // Take-free when a task waits: the first page takes it on load.
  const first = await add({ subject: "printer on fire" });
  const alice = await open("alice");
  await task(alice, first, "assigned").waitFor();
  assert.match(await task(alice, first).locator(".state").textContent(), /Assigned \(taken\)/);
  assert.equal(await task(alice, first).locator(".attempt").textContent(), "attempt 1");
  assert.match(await task(alice, first).locator(".data").textContent(), /printer on fire/);
  await alice.locator("#status", { hasText: "waiting for tasks" }).waitFor();
  await task(alice, first).getByRole("button", { name: "Done" }).click();
  await task(alice, first, "done").waitFor();

  const bob = await open("bob");
  await bob.locator("#status", { hasText: "waiting for tasks" }).waitFor();
  await workers(2);
  const pages = [alice, bob];

  // An offer arrives, with Assign, Reject and a countdown from
  // OFFER_TIMEOUT; rejected, it goes to the other page.
  const second = await add({ subject: "paper jam" }, "?complete=1");
  let [offered, other] = await offeredTo(pages, second);
  const countdown = await task(offered, second).locator(".countdown").textContent();
  const secs = Number(countdown.replace(" s", ""));
  assert.ok(secs >= 1 && secs <= OFFER_TIMEOUT_MS / 1000, `countdown ${countdown}`);
  await shot(offered, "offer");
  await task(offered, second).getByRole("button", { name: "Reject" }).click();
  await task(offered, second, "rejected").waitFor();
  await task(other, second, "offered").waitFor();
  assert.equal(await task(other, second).locator(".attempt").textContent(), "attempt 2");
  // Assign, then done (the task needs it).
  await task(other, second).getByRole("button", { name: "Assign" }).click();
  await task(other, second, "assigned").waitFor();
  await task(other, second).getByRole("button", { name: "Done" }).click();
  await task(other, second, "done").waitFor();

  // Forced assignment, added with the page's form (through the backend,
  // with its token): shown assigned, with no Assign or Reject.
  await alice.fill("#subject", "urgent");
  await alice.check("#forced");
  await alice.getByRole("button", { name: "Add" }).click();
  const added = await alice.locator("#log li", { hasText: "added " }).textContent();
  const forced = added.split("added ")[1];
  const holder = await Promise.any(pages.map((p) => task(p, forced, "assigned").waitFor({ timeout: 10_000 }).then(() => p)));
  assert.match(await task(holder, forced).locator(".state").textContent(), /Assigned \(forced\)/);
  assert.equal(await task(holder, forced).getByRole("button", { name: "Reject" }).count(), 0);
  assert.equal(await task(holder, forced).getByRole("button", { name: "Assign" }).count(), 0);
  await shot(holder, "forced");

  // Re-offer: an offer left unanswered for OFFER_TIMEOUT expires on its
  // page and goes to the other, attempt 2; its countdown runs meanwhile.
  const fourth = await add({ subject: "no one answers" });
  [offered, other] = await offeredTo(pages, fourth);
  const started = Date.now();
  const first_ = await task(offered, fourth).locator(".countdown").textContent();
  await offered.waitForFunction(
    ([id, before]) => document.querySelector(`li.task[data-id="${id}"] .countdown`)?.textContent !== before,
    [fourth, first_], { timeout: OFFER_TIMEOUT_MS + 2000 });
  await task(offered, fourth, "expired").waitFor({ timeout: OFFER_TIMEOUT_MS + 10_000 });
  await task(other, fourth, "offered").waitFor();
  const waited = Date.now() - started;
  assert.ok(waited >= OFFER_TIMEOUT_MS - 1000, `re-offered after ${waited} ms`);
  assert.equal(await task(other, fourth).locator(".attempt").textContent(), "attempt 2");
  assert.match(await task(offered, fourth).locator(".note").textContent(), /offered to the next operator/);
  await shot(offered, "expired");
  await task(other, fourth).getByRole("button", { name: "Assign" }).click();
  await task(other, fourth, "assigned").waitFor();

  // The Take button: with both pages holding an open offer, a new task
  // waits, and a click takes it.
  const a = await add({ subject: "for one of you" });
  [offered, other] = await offeredTo(pages, a);
  const b = await add({ subject: "for the other" });
  await task(other, b, "offered").waitFor();
  const waiting = await add({ subject: "waiting" });
  await other.getByRole("button", { name: "Take a free task" }).click();
  await task(other, waiting, "assigned").waitFor();
  assert.match(await task(other, waiting).locator(".state").textContent(), /Assigned \(taken\)/);
  await task(offered, a).getByRole("button", { name: "Reject" }).click();
  await task(offered, a, "rejected").waitFor();
  await task(other, b).getByRole("button", { name: "Assign" }).click();
  await task(other, b, "assigned").waitFor();
  // The rejected task waited for a page that had not refused it.
  await task(other, a, "offered").waitFor();
  assert.equal(await task(other, a).locator(".attempt").textContent(), "attempt 2");
  await task(other, a).getByRole("button", { name: "Assign" }).click();
  await task(other, a, "assigned").waitFor();

  await shot(alice, "alice");
  await shot(bob, "bob");
  for (const p of pages) assert.deepEqual(p.problems, [], `${p.operator}'s page logged no error`);
});
