// The inspector page in a real browser: Debian's headless Chromium driven by playwright-core,
// against the to-do example as users run it (--dev; --demo-users for an app that requires a
// token). What a user does with the page: composes and sends actions, subscribes, sees events
// with their seq, follows a job from its 202 reply, watches a live query's view as a table, and is
// told why a socket is refused or closed.
// Screenshots go to INSPECTOR_SCREENSHOTS (default target/browser/; the paths are printed).
// Skipped, saying why, where Chromium is not installed.

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { api, startExample } from "../support/example.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const screenshots = resolve(process.env.INSPECTOR_SCREENSHOTS ?? join(here, "..", "..", "target", "browser"));
const skip = existsSync(chromiumPath)
  ? false
  : `no Chromium at ${chromiumPath} (install Debian's chromium and chromium-driver, or set CHROMIUM_PATH)`;
if (skip) console.log(`browser test skipped: ${skip}`);

const NEEDS_TOKEN = "needs a token: enter one in the token field";

let browser;
before(async () => {
  if (skip) return;
  const { chromium } = await import("playwright-core");
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    // What this machine needs: no sandbox as root, and no background connections to the
    // (closed) outside network.
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
});
after(async () => {
  await browser?.close();
});

/** A fresh page on the inspector; `problems` collects the page's script errors. */
async function openInspector(server, viewport) {
  const page = await browser.newPage({ viewport });
  const problems = [];
  page.on("pageerror", (e) => problems.push(String(e)));
  await page.goto(`${server.url}/inspector`);
  return { page, problems };
}

const statusText = (page) => page.locator("[data-testid=status]").textContent();

async function waitForStatus(page, text) {
  await page.waitForFunction((t) => document.querySelector("[data-testid=status]")?.textContent === t, text);
}

async function screenshot(page, name) {
  mkdirSync(screenshots, { recursive: true });
  const path = join(screenshots, name);
  await page.screenshot({ path });
  console.log(`screenshot: ${path}`);
}

/** What is cut off or scrolls sideways at the page's width: controls outside their panel, panels
 * wider than themselves, a page wider than the window. */
async function layoutProblems(page) {
  return page.evaluate(() => {
    const cut = [];
    for (const node of document.querySelectorAll("button, input, select, textarea, .pill")) {
      const r = node.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue; // hidden
      const panel = node.closest("section, header");
      const box = panel ? panel.getBoundingClientRect() : { left: 0, right: innerWidth };
      if (r.left < Math.max(0, box.left) - 0.5 || r.right > Math.min(innerWidth, box.right) + 0.5) {
        cut.push(`${node.tagName.toLowerCase()}#${node.id || node.dataset.testid || "?"} [${r.left}, ${r.right}]`);
      }
    }
    const panels = [...document.querySelectorAll("section")]
      .filter((s) => s.scrollWidth > s.clientWidth + 1)
      .map((s) => `${s.id}: ${s.scrollWidth} > ${s.clientWidth}`);
    return { scrollWidth: document.documentElement.scrollWidth, innerWidth, cut, panels };
  });
}

function assertLayout(layout) {
  assert.ok(layout.scrollWidth <= layout.innerWidth, `the page is ${layout.scrollWidth} px wide in ${layout.innerWidth}`);
  assert.deepEqual(layout.cut, [], "controls cut off");
  assert.deepEqual(layout.panels, [], "panels scrolling sideways");
}

/** The pks of the live table's rows, top to bottom. */
const liveRows = (page) => page.$$eval("[data-testid=live-row]", (rows) => rows.map((r) => r.dataset.pk));
const liveSeq = async (page) => Number(await page.locator("[data-testid=live-seq]").textContent());

/** Waits until the live table shows exactly these rows, in this order (a clear failure if not). */
async function waitForRows(page, pks, what) {
  const want = pks.map(String);
  try {
    await page.waitForFunction(
      (w) => JSON.stringify([...document.querySelectorAll("[data-testid=live-row]")].map((r) => r.dataset.pk)) === JSON.stringify(w),
      want, { timeout: 10_000 });
  } catch (e) {
    assert.fail(`${what}: the live table shows ${JSON.stringify(await liveRows(page))}, not ${JSON.stringify(want)} (${e.message.split("\n")[0]})`);
  }
}

/** The frame the composer would send, as JSON. */
async function composedFrame(page) {
  return JSON.parse(await page.inputValue("[data-testid=frame]"));
}

/** A list with two done tasks (its archive_done job then takes two pauses); returns its id. */
async function listWithDoneTasks(server) {
  const list = await api(server.url, "POST", "/api/lists/", { name: "Chores" });
  assert.equal(list.status, 201);
  for (const text of ["sweep", "dust"]) {
    const task = await api(server.url, "POST", "/api/tasks/", { text, list_id: list.body.id, done: true });
    assert.equal(task.status, 201);
  }
  return list.body.id;
}

/** Starts the list's archive_done job from the composer (202, with a Follow button), and waits
 * until the job has moved on, so that a subscription from now would miss its PENDING. */
async function startJob(server, page, listId) {
  await page.selectOption("[data-testid=stream]", "lists");
  await page.selectOption("[data-testid=action]", "archive_done");
  await page.fill("[data-testid=pk]", String(listId));
  await page.fill("[data-testid=data]", JSON.stringify({ delay_ms: 400 }));
  await page.click("[data-testid=send]");
  const started = page.locator(".entry[data-kind=reply][data-action=archive_done]");
  await started.waitFor();
  assert.equal(await started.locator("[data-testid=status-code]").textContent(), "202");
  const job = JSON.parse(await started.locator("pre").textContent());
  assert.equal(job.state, "PENDING");
  for (let i = 0; ; i++) {
    const now = await api(server.url, "GET", `/api/jobs/${job.id}/`);
    if (now.body.state !== "PENDING") break;
    assert.ok(i < 100, "the job starts within 5 s");
    await new Promise((r) => setTimeout(r, 50));
  }
  return { started, job };
}

test("the inspector lists streams, sends actions and shows live events with their seq", { skip, timeout: 120_000 }, async () => {
  const server = await startExample({ args: ["--dev"] });
  try {
    const list = await api(server.url, "POST", "/api/lists/", { name: "Groceries" });
    assert.equal(list.status, 201);
    const listId = list.body.id;

    const { page, problems } = await openInspector(server, { width: 1440, height: 900 });
    await waitForStatus(page, "connected");

    // Every stream, with its fields, group keys and actions.
    const tasks = page.locator(".stream[data-stream=tasks]");
    await tasks.waitFor();
    const tasksText = await tasks.textContent();
    for (const expected of ["todolist.Task", "list_id", "max 140", "subscribe_instance", "subscribe", "archive_done"]) {
      assert.ok(tasksText.includes(expected), `the tasks card shows ${expected}: ${tasksText}`);
    }
    assert.equal(await page.locator(".stream[data-stream=lists]").count(), 1);

    // Create a task through the form.
    await page.selectOption("[data-testid=stream]", "tasks");
    await page.selectOption("[data-testid=action]", "create");
    await page.fill("[data-testid=data]", JSON.stringify({ text: "buy milk", list_id: listId }));
    await page.click("[data-testid=send]");
    const createReply = page.locator(".entry[data-kind=reply][data-action=create]");
    await createReply.waitFor();
    assert.equal(await createReply.locator("[data-testid=status-code]").textContent(), "201");
    const created = JSON.parse(await createReply.locator("pre").textContent());
    assert.equal(created.text, "buy milk");

    // Subscribe to the list's tasks with the button.
    await page.selectOption("[data-testid=quick-stream]", "tasks");
    await page.selectOption("[data-testid=quick-key]", "list_id");
    await page.fill("[data-testid=quick-value]", String(listId));
    await page.click("[data-testid=subscribe]");
    const subscribeReply = page.locator(".entry[data-kind=reply][data-action=subscribe]");
    await subscribeReply.waitFor();
    assert.equal(await subscribeReply.locator("[data-testid=status-code]").textContent(), "201");
    await page.locator("[data-testid=subscriptions] [data-testid=unsubscribe]").waitFor();

    // A write over HTTP, from outside the page: its event appears in the log with its seq.
    const patched = await api(server.url, "PATCH", `/api/tasks/${created.id}/`, { done: true });
    assert.equal(patched.status, 200);
    const event = page.locator(".entry[data-kind=event][data-action=update]");
    await event.waitFor();
    const seqText = await event.locator("[data-testid=seq]").textContent();
    const seq = Number(/seq (\d+)/.exec(seqText)?.[1]);
    assert.ok(seq > 0, `the event shows its seq: ${seqText}`);
    assert.deepEqual(JSON.parse(await event.locator("pre").textContent()), { ...created, done: true });
    assert.equal(await page.locator("[data-testid=sub-seq]").textContent(), String(seq));

    await screenshot(page, "inspector-1440.png");

    // Unsubscribe with its button: the next write sends nothing.
    await page.click("[data-testid=subscriptions] [data-testid=unsubscribe]");
    const unsubscribeReply = page.locator(".entry[data-kind=reply][data-action=unsubscribe]");
    await unsubscribeReply.waitFor();
    assert.equal(await unsubscribeReply.locator("[data-testid=status-code]").textContent(), "204");
    await api(server.url, "PATCH", `/api/tasks/${created.id}/`, { done: false });
    await page.waitForTimeout(500);
    assert.equal(await page.locator(".entry[data-kind=event]").count(), 1);
    assert.deepEqual(problems, [], "no script errors on the page");
  } finally {
    await server.stop();
  }
});

test("custom actions are listed with what they do, and called from the composer", { skip, timeout: 120_000 }, async () => {
  const server = await startExample({ args: ["--dev"] });
  try {
    const list = await api(server.url, "POST", "/api/lists/", { name: "Weekend" });
    assert.equal(list.status, 201);
    const listId = list.body.id;
    const task = await api(server.url, "POST", "/api/tasks/", { text: "mow the lawn", list_id: listId });
    assert.equal(task.status, 201);
    const taskId = task.body.id;

    const { page, problems } = await openInspector(server, { width: 1440, height: 900 });
    await waitForStatus(page, "connected");

    // The tasks card lists both actions, what they act on and their doc comments.
    const card = page.locator(".stream[data-stream=tasks] [data-testid=custom-actions]");
    await card.waitFor();
    const cardText = await card.textContent();
    assert.ok(cardText.includes("complete (one task) — Marks the task done (a done task stays done)."), cardText);
    assert.ok(cardText.includes("clear_done (the collection) — Deletes the done tasks of a list"), cardText);
    assert.equal(await page.locator(".stream[data-stream=lists] [data-testid=custom-actions]").count(), 0);

    // Follow the list's tasks.
    await page.selectOption("[data-testid=quick-stream]", "tasks");
    await page.selectOption("[data-testid=quick-key]", "list_id");
    await page.fill("[data-testid=quick-value]", String(listId));
    await page.click("[data-testid=subscribe]");
    const subscribed = page.locator(".entry[data-kind=reply][data-action=subscribe]");
    await subscribed.waitFor();
    assert.equal(await subscribed.locator("[data-testid=status-code]").textContent(), "201");

    // complete: in the action select after the built-in ones, on one task by pk, no arguments.
    await page.selectOption("[data-testid=stream]", "tasks");
    const actions = await page.$$eval("[data-testid=action] option", (o) => o.map((x) => x.value));
    assert.deepEqual(actions.slice(actions.indexOf("unsubscribe") + 1), ["clear_done", "complete", "archive_done"]);
    await page.selectOption("[data-testid=action]", "complete");
    const hint = page.locator("[data-testid=action-hint]");
    assert.equal(await hint.isVisible(), true);
    assert.match(await hint.textContent(), /Marks the task done \(a done task stays done\)\./);
    assert.match(await hint.textContent(), /takes no arguments/);
    assert.equal(await page.locator("#pk-row").isVisible(), true);
    assert.equal(await page.getAttribute("[data-testid=pk]", "placeholder"), "id (i32)");
    assert.equal(await page.locator("#data-row").isVisible(), false, "no arguments: no data field");
    await page.fill("[data-testid=pk]", String(taskId));
    assert.deepEqual((await composedFrame(page)).payload, { action: "complete", request_id: "r2", pk: taskId });
    await page.click("[data-testid=send]");
    const completed = page.locator(".entry[data-kind=reply][data-action=complete]");
    await completed.waitFor();
    assert.equal(await completed.locator("[data-testid=status-code]").textContent(), "200");
    const done = JSON.parse(await completed.locator("pre").textContent());
    assert.equal(done.id, taskId);
    assert.equal(done.done, true);
    // What it changed is saved as an update: the subscription sees it.
    const event = page.locator(".entry[data-kind=event][data-action=update]");
    await event.waitFor();
    assert.equal(JSON.parse(await event.locator("pre").textContent()).done, true);

    // clear_done: on the collection, no pk; the template comes from the arguments' schema.
    await page.selectOption("[data-testid=action]", "clear_done");
    assert.equal(await page.locator("#pk-row").isVisible(), false);
    assert.equal(await page.locator("#data-row").isVisible(), true);
    assert.match(await hint.textContent(), /Deletes the done tasks of a list/);
    assert.match(await hint.textContent(), /arguments: list_id \(integer, required\)/);
    assert.equal(await page.inputValue("[data-testid=data]"), "");
    assert.equal(await page.getAttribute("[data-testid=data]", "placeholder"), JSON.stringify({ list_id: 0 }, null, 1));
    assert.deepEqual((await composedFrame(page)).payload, { action: "clear_done", request_id: "r3" });
    await page.fill("[data-testid=data]", JSON.stringify({ list_id: listId }));
    assert.deepEqual((await composedFrame(page)).payload, { action: "clear_done", request_id: "r3", data: { list_id: listId } });
    await page.click("[data-testid=send]");
    const cleared = page.locator(".entry[data-kind=reply][data-action=clear_done]");
    await cleared.waitFor();
    assert.equal(await cleared.locator("[data-testid=status-code]").textContent(), "200");
    assert.deepEqual(JSON.parse(await cleared.locator("pre").textContent()), { deleted: 1 });
    await page.locator(".entry[data-kind=event][data-action=delete]").waitFor();

    // Without its argument: 400 with the field's error, logged like any other reply.
    await page.fill("[data-testid=data]", "{}");
    await page.click("[data-testid=send]");
    const refused = page.locator(".entry[data-kind=reply][data-action=clear_done]").nth(1);
    await refused.waitFor();
    assert.equal(await refused.locator("[data-testid=status-code]").textContent(), "400");
    assert.match(await refused.locator(".head").textContent(), /This field is required\./);

    // A chip on the card composes the action.
    await page.locator(".stream[data-stream=tasks] .chip.custom", { hasText: "complete" }).click();
    assert.equal(await page.inputValue("[data-testid=action]"), "complete");
    await screenshot(page, "inspector-custom-actions.png");
    // At 800 px, with the hint and the actions' descriptions: nothing cut off.
    await page.setViewportSize({ width: 800, height: 900 });
    assertLayout(await layoutProblems(page));
    assert.deepEqual(problems, [], "no script errors on the page");
  } finally {
    await server.stop();
  }
});

test("hints are placeholders, never sent, and a new action starts its arguments over", { skip, timeout: 120_000 }, async () => {
  const server = await startExample({ args: ["--dev"] });
  try {
    const { page, problems } = await openInspector(server, { width: 1440, height: 900 });
    await waitForStatus(page, "connected");

    // retrieve: the pk is a greyed hint naming the field and its type, and not in the frame.
    await page.selectOption("[data-testid=stream]", "tasks");
    await page.selectOption("[data-testid=action]", "retrieve");
    assert.equal(await page.inputValue("[data-testid=pk]"), "");
    assert.equal(await page.getAttribute("[data-testid=pk]", "placeholder"), "id (i32)");
    assert.ok(!("pk" in (await composedFrame(page)).payload), "an empty pk is not sent");
    await page.click("[data-testid=send]");
    const refused = page.locator(".entry[data-kind=reply][data-action=retrieve]");
    await refused.waitFor();
    assert.equal(await refused.locator("[data-testid=status-code]").textContent(), "400");

    // create: the writable fields are a template shown greyed, the field itself is empty.
    await page.selectOption("[data-testid=action]", "create");
    assert.equal(await page.inputValue("[data-testid=data]"), "");
    const template = JSON.parse(await page.getAttribute("[data-testid=data]", "placeholder"));
    assert.deepEqual(template, { text: "", done: false, list_id: 0, priority: 0, note: null });
    assert.ok(!("data" in (await composedFrame(page)).payload), "the template is not sent");
    // "use the template" copies it in, to edit.
    await page.click("[data-testid=use-template]");
    assert.deepEqual(JSON.parse(await page.inputValue("[data-testid=data]")), template);
    assert.deepEqual((await composedFrame(page)).payload.data, template);

    // Typed arguments, then another action: its own, empty again.
    await page.fill("[data-testid=data]", JSON.stringify({ text: "typed", list_id: 7 }));
    assert.equal((await composedFrame(page)).payload.data.text, "typed");
    await page.selectOption("[data-testid=action]", "patch");
    assert.equal(await page.inputValue("[data-testid=data]"), "");
    assert.deepEqual((await composedFrame(page)).payload, { action: "patch", request_id: "r2" });
    await page.fill("[data-testid=pk]", "5");
    assert.equal((await composedFrame(page)).payload.pk, 5);
    await page.selectOption("[data-testid=action]", "delete");
    assert.equal(await page.inputValue("[data-testid=pk]"), "");
    assert.deepEqual((await composedFrame(page)).payload, { action: "delete", request_id: "r2" });

    // subscribe: the group value and since are hints too.
    await page.selectOption("[data-testid=action]", "subscribe");
    await page.fill("[data-testid=since]", "3");
    await page.check("[data-testid=snapshot]");
    assert.equal(await page.getAttribute("[data-testid=group-value]", "placeholder"), "value of list_id");
    assert.ok(await page.getAttribute("[data-testid=since]", "placeholder"));
    await page.selectOption("[data-testid=action]", "subscribe_instance");
    await page.selectOption("[data-testid=action]", "subscribe");
    assert.equal(await page.inputValue("[data-testid=since]"), "");
    assert.equal(await page.isChecked("[data-testid=snapshot]"), false);
    assert.deepEqual((await composedFrame(page)).payload, { action: "subscribe", request_id: "r2" });
    assert.deepEqual(problems, [], "no script errors on the page");
  } finally {
    await server.stop();
  }
});

test("at 800 px wide nothing is cut off, and a job is followed from its 202 reply with every state", { skip, timeout: 120_000 }, async () => {
  const server = await startExample({ args: ["--dev"] });
  try {
    const listId = await listWithDoneTasks(server);

    const { page, problems } = await openInspector(server, { width: 800, height: 900 });
    await waitForStatus(page, "connected");
    await page.locator(".stream[data-stream=tasks]").waitFor();

    const { started, job } = await startJob(server, page, listId);

    // One click: every state of the job shows, from PENDING to SUCCESS, in order.
    await started.locator("[data-testid=follow-job]").click();
    const jobEvents = page.locator(".entry[data-kind=event][data-stream=jobs]");
    await page.locator(".entry[data-kind=event][data-stream=jobs] [data-testid=job-state]", { hasText: "SUCCESS" }).waitFor();
    const states = await jobEvents.locator("[data-testid=job-state]").allTextContents();
    assert.deepEqual(states, ["PENDING", "STARTED", "SUCCESS"]);
    const follow = page.locator(".entry[data-kind=sent][data-stream=jobs] pre");
    assert.deepEqual(JSON.parse(await follow.textContent()).payload,
      { action: "subscribe_instance", request_id: "r2", pk: job.id, since: 0 });
    assert.match(await started.locator("[data-testid=follow-job]").textContent(), /following/);
    assert.equal(await page.locator("[data-testid=subscriptions] tr[data-request-id='\"r2\"']").count(), 1);

    // At 800 px: no horizontal scrolling, in the page or in any panel, and every control whole.
    assertLayout(await layoutProblems(page));
    await screenshot(page, "inspector-800.png");
    // The same at a desktop width (docs/inspector.png is this one).
    await page.setViewportSize({ width: 1280, height: 800 });
    await screenshot(page, "inspector-job-1280.png");
    assert.deepEqual(problems, [], "no script errors on the page");
  } finally {
    await server.stop();
  }
});

test("a live query's view is a table that events keep sorted, windowed and current", { skip, timeout: 120_000 }, async () => {
  const server = await startExample({ args: ["--dev"] });
  try {
    const list = await api(server.url, "POST", "/api/lists/", { name: "Errands" });
    const other = await api(server.url, "POST", "/api/lists/", { name: "Elsewhere" });
    assert.equal(list.status, 201);
    assert.equal(other.status, 201);
    const listId = list.body.id;
    const task = async (text, priority) => {
      const created = await api(server.url, "POST", "/api/tasks/", { text, list_id: listId, priority });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      return created.body.id;
    };
    const low = await task("post letters", 1);
    const mid = await task("buy stamps", 3);
    const high = await task("pay rent", 5);
    // Another list's task never shows.
    assert.equal((await api(server.url, "POST", "/api/tasks/", { text: "elsewhere", list_id: other.body.id, priority: 9 })).status, 201);

    const { page, problems } = await openInspector(server, { width: 1440, height: 900 });
    await waitForStatus(page, "connected");
    await page.locator(".stream[data-stream=tasks]").waitFor();

    // The form: collection streams only, a filter example from the stream's lookups.
    assert.deepEqual(await page.$$eval("[data-testid=live-stream] option", (o) => o.map((x) => x.value)), ["lists", "tasks"]);
    await page.selectOption("[data-testid=live-stream]", "tasks");
    const example = JSON.parse(await page.getAttribute("[data-testid=live-filter]", "placeholder"));
    assert.equal(example.list_id, 1, `the example filters by the group key: ${JSON.stringify(example)}`);
    assert.ok(Object.keys(example).some((k) => k.includes("__")), `the example shows a lookup: ${JSON.stringify(example)}`);

    // Watch the list's two highest-priority tasks.
    await page.fill("[data-testid=live-filter]", JSON.stringify({ list_id: listId }));
    await page.fill("[data-testid=live-ordering]", "-priority");
    await page.fill("[data-testid=live-limit]", "2");
    await page.click("[data-testid=live-watch]");
    const sent = page.locator(".entry[data-kind=sent][data-action=subscribe]");
    await sent.waitFor();
    const subscribe = JSON.parse(await sent.locator("pre").textContent()).payload;
    assert.deepEqual(subscribe, {
      action: "subscribe", request_id: subscribe.request_id, snapshot: true,
      query: { filter: { list_id: listId }, ordering: ["-priority"], limit: 2 },
    });
    await waitForRows(page, [high, mid], "the snapshot");
    const headers = await page.$$eval("[data-testid=live-table] th", (th) => th.map((x) => x.textContent));
    assert.deepEqual(headers, ["id", "text", "done", "list_id", "owner", "priority", "note"]);
    const texts = await page.$$eval("[data-testid=live-row] td[data-field=text]", (td) => td.map((x) => x.textContent));
    assert.deepEqual(texts, ["pay rent", "buy stamps"]);
    let seq = await liveSeq(page);
    assert.ok(seq > 0, "the summary shows the snapshot's seq");
    assert.match(await page.locator("[data-testid=live-summary]").textContent(), /2 rows/);
    // It is a subscription like the others, following the query.
    const subRow = page.locator(`[data-testid=subscriptions] tr[data-request-id='${JSON.stringify(subscribe.request_id)}']`);
    assert.match(await subRow.textContent(), /query .*"-priority"/);

    // A higher-priority task enters first, highlighted; the old second place leaves the window.
    const urgent = await task("fix the roof", 8);
    await waitForRows(page, [urgent, high], "after a higher-priority create");
    assert.ok(await page.locator(`[data-testid=live-row][data-pk="${urgent}"]`).evaluate((r) => r.classList.contains("flash")),
      "the row that entered is highlighted");
    assert.ok((await liveSeq(page)) > seq, "the seq moves on");
    seq = await liveSeq(page);

    // Moved to another list, it leaves the view; the next one moves up into the window.
    assert.equal((await api(server.url, "PATCH", `/api/tasks/${urgent}/`, { list_id: other.body.id })).status, 200);
    await waitForRows(page, [high, mid], "after a patch that leaves the filter");
    assert.ok((await liveSeq(page)) > seq);
    seq = await liveSeq(page);

    // An update that stays in the view re-sorts it.
    assert.equal((await api(server.url, "PATCH", `/api/tasks/${mid}/`, { priority: 7, text: "buy stamps now" })).status, 200);
    await waitForRows(page, [mid, high], "after a priority raise");
    assert.equal(await page.locator(`[data-testid=live-row][data-pk="${mid}"] td[data-field=text]`).textContent(), "buy stamps now");

    // Deleted: gone, and the last one moves up.
    assert.equal((await api(server.url, "DELETE", `/api/tasks/${high}/`)).status, 204);
    await waitForRows(page, [mid, low], "after a delete");
    assert.ok((await liveSeq(page)) > seq);
    await screenshot(page, "inspector-live-query.png");

    // A bad query: its errors next to the form; the view watched goes on.
    assert.equal(await page.locator("[data-testid=live-error]").isVisible(), false);
    await page.fill("[data-testid=live-filter]", JSON.stringify({ text__regex: "a" }));
    await page.click("[data-testid=live-watch]");
    await page.locator("[data-testid=live-error]", { hasText: "Unknown filter." }).waitFor();
    assert.match(await page.locator("[data-testid=live-error]").textContent(), /text__regex: Unknown filter\./);
    assert.deepEqual(await liveRows(page), [String(mid), String(low)]);
    await screenshot(page, "inspector-live-query-error.png");

    // Reconnect: the query is subscribed again with a snapshot, which replaces the table.
    await page.click("[data-testid=connect]");
    await page.locator(".entry[data-kind=sent][data-action=subscribe]").nth(2).waitFor();
    const again = JSON.parse(await page.locator(".entry[data-kind=sent][data-action=subscribe] pre").nth(2).textContent()).payload;
    assert.deepEqual(again, subscribe, "the same query, request_id and snapshot, no since");
    await page.locator(".entry[data-kind=reply][data-action=subscribe] [data-testid=status-code]", { hasText: "201" }).nth(1).waitFor();
    await waitForRows(page, [mid, low], "after the reconnect");
    assert.equal(await page.locator("[data-testid=live-state]").textContent(), "live");
    assert.equal((await api(server.url, "POST", "/api/tasks/", { text: "call mum", list_id: listId, priority: 9 })).status, 201);
    await page.waitForFunction(() => document.querySelector("[data-testid=live-row] td[data-field=text]")?.textContent === "call mum");
    assert.equal((await liveRows(page)).length, 2);

    // Narrow, with the table: nothing cut off or scrolling sideways.
    await page.setViewportSize({ width: 800, height: 900 });
    assertLayout(await layoutProblems(page));
    await screenshot(page, "inspector-live-query-800.png");
    await page.setViewportSize({ width: 1440, height: 900 });

    // Unsubscribe from the Subscriptions table: the view stops.
    await subRow.locator("[data-testid=unsubscribe]").click();
    await page.waitForFunction(() => document.querySelector("[data-testid=live-state]")?.textContent === "stopped");
    assert.equal(await subRow.count(), 0);
    assert.deepEqual(problems, [], "no script errors on the page");
  } finally {
    await server.stop();
  }
});

test("a job whose start the change log no longer holds is followed from now, with its state read", { skip, timeout: 120_000 }, async () => {
  // One change kept per stream: `since: 0` is 410 once the job has two.
  const server = await startExample({ args: ["--dev"], env: { REST_LIVE_LOG_RETAIN: "1" } });
  try {
    const listId = await listWithDoneTasks(server);
    const { page, problems } = await openInspector(server, { width: 1280, height: 800 });
    await waitForStatus(page, "connected");
    const { started, job } = await startJob(server, page, listId);
    await started.locator("[data-testid=follow-job]").click();

    const replies = page.locator(".entry[data-kind=reply][data-stream=jobs]");
    await page.locator(".entry[data-kind=event][data-stream=jobs] [data-testid=job-state]", { hasText: "SUCCESS" }).waitFor();
    const seen = [];
    for (const entry of await replies.all()) {
      seen.push([await entry.getAttribute("data-action"), await entry.locator("[data-testid=status-code]").textContent()]);
    }
    assert.deepEqual(seen, [["subscribe_instance", "410"], ["subscribe_instance", "201"], ["retrieve", "200"]]);
    // The state read after subscribing is the one the job had moved on to; then the rest live.
    const read = await replies.last().locator("[data-testid=job-state]").textContent();
    assert.ok(["STARTED", "SUCCESS"].includes(read), read);
    assert.equal(JSON.parse(await replies.last().locator("pre").textContent()).id, job.id);
    assert.match(await started.locator("[data-testid=follow-job]").textContent(), /following/);
    await screenshot(page, "inspector-job-resync.png");
    assert.deepEqual(problems, [], "no script errors on the page");
  } finally {
    await server.stop();
  }
});

test("an app that requires a token: the page asks for one, and says why a socket closed", { skip, timeout: 120_000 }, async () => {
  const server = await startExample({ args: ["--dev", "--demo-users"] });
  try {
    const { page, problems } = await openInspector(server, { width: 800, height: 900 });
    await page.locator(".stream[data-stream=tasks]").waitFor();
    // No token: no socket is tried (a browser would report the refused handshake as 1006).
    await waitForStatus(page, NEEDS_TOKEN);
    await page.waitForTimeout(300);
    assert.equal(await statusText(page), NEEDS_TOKEN);
    assert.equal(await page.getAttribute("[data-testid=token]", "placeholder"), "token (required)");
    assert.ok(!(await page.locator("[data-testid=log]").textContent()).includes("1006"));
    await screenshot(page, "inspector-needs-token.png");

    // Connect anyway: the handshake is refused, and the page says why.
    await page.click("[data-testid=connect]");
    await page.locator(".entry[data-kind=info]", { hasText: "the handshake failed" }).waitFor();
    assert.equal(await statusText(page), NEEDS_TOKEN);

    // A token the app does not know: told so (the HTTP API refuses it too).
    await page.fill("[data-testid=token]", "nobody-token");
    await page.press("[data-testid=token]", "Enter");
    await waitForStatus(page, "token not accepted: enter another");

    // alice's token: connected; her logout closes the socket with 4003, shown with its meaning.
    await page.fill("[data-testid=token]", "alice-token");
    await page.press("[data-testid=token]", "Enter");
    await waitForStatus(page, "connected");
    const logout = await fetch(`${server.url}/logout`, { method: "POST", headers: { Authorization: "Bearer alice-token" } });
    assert.equal(logout.status, 204);
    await waitForStatus(page, "closed 4003: session revoked");
    assert.match(await page.getAttribute("[data-testid=status]", "title"), /sign in again/);
    await screenshot(page, "inspector-revoked.png");
    assert.deepEqual(problems, [], "no script errors on the page");
  } finally {
    await server.stop();
  }
});
