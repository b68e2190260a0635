// The inspector page in a real browser: Debian's headless Chromium driven by playwright-core,
// against the to-do example started with --dev. Opens the page, creates a task through the form,
// subscribes with the button, makes an HTTP write, and sees its event (with its seq) in the log;
// then unsubscribes. Saves a screenshot (INSPECTOR_SCREENSHOT, default
// target/browser/inspector.png). Skipped, saying why, where Chromium is not installed.

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { api, startExample } from "../support/example.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const screenshot = resolve(process.env.INSPECTOR_SCREENSHOT ?? join(here, "..", "..", "target", "browser", "inspector.png"));
const skip = existsSync(chromiumPath)
  ? false
  : `no Chromium at ${chromiumPath} (install Debian's chromium and chromium-driver, or set CHROMIUM_PATH)`;
if (skip) console.log(`browser test skipped: ${skip}`);

test("the inspector lists streams, sends actions and shows live events with their seq", { skip, timeout: 120_000 }, async () => {
  const { chromium } = await import("playwright-core");
  const server = await startExample({ args: ["--dev"] });
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    // What this machine needs: no sandbox as root, and no background connections to the
    // (closed) outside network.
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  try {
    const list = await api(server.url, "POST", "/api/lists/", { name: "Groceries" });
    assert.equal(list.status, 201);
    const listId = list.body.id;

    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    const problems = [];
    page.on("pageerror", (e) => problems.push(String(e)));
    await page.goto(`${server.url}/inspector`);
    await page.waitForFunction(() => document.querySelector("[data-testid=status]")?.textContent === "connected");

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

    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot });
    console.log(`screenshot: ${screenshot}`);

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
    await browser.close();
    await server.stop();
  }
});
