// dcrf-client 0.3.0, the npm client of djangochannelsrestframework (and so of the channels-api
// protocol family), against the to-do example, unchanged: `ws` as its WebSocket, the documented
// `pkField` option for a model whose pk field is `id`. Every call below is the client's public
// API; where its expectations and PROTOCOL.md differ, the test says so.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { api, startExample } from "../support/example.mjs";

const require = createRequire(import.meta.url);
const dcrf = require("dcrf-client").default;

let server;
let client;
let listId;

before(async () => {
  server = await startExample();
  const list = await api(server.url, "POST", "/api/lists/", { name: "Groceries" });
  assert.equal(list.status, 201);
  listId = list.body.id;
  client = dcrf.connect(server.wsUrl, {
    websocket: { WebSocket, maxRetries: 3, minReconnectionDelay: 100 },
    // rest-live objects carry their pk under its field name; delete events carry {"pk": …},
    // which the client renames to pkField (ensurePkFieldInDeleteEvents, on by default).
    pkField: "id",
  });
});

after(async () => {
  client?.close();
  await server?.stop();
});

/** Resolves once `predicate()` holds, polling; fails after `ms`. */
async function until(predicate, what, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("create, retrieve, list, update, patch, delete", async () => {
  const created = await client.create("tasks", { text: "milk", list_id: listId });
  assert.deepEqual(created, {
    id: created.id, text: "milk", done: false, list_id: listId, priority: 0, note: null,
  });

  assert.deepEqual(await client.retrieve("tasks", created.id), created);

  // PROTOCOL.md pages every list; djangochannelsrestframework's list resolves with a bare array.
  const page = await client.list("tasks", { list_id: listId });
  assert.deepEqual(page, { count: 1, results: [created], limit: 25, offset: 0, next: null });

  const updated = await client.update("tasks", created.id, { text: "oat milk", list_id: listId });
  assert.equal(updated.text, "oat milk");

  const patched = await client.patch("tasks", created.id, { done: true });
  assert.deepEqual(patched, { ...updated, done: true });

  // A 204 reply has data null: the promise resolves with it.
  assert.equal(await client.delete("tasks", created.id), null);

  // Failures reject with the reply's payload.
  await assert.rejects(client.retrieve("tasks", created.id), (payload) => {
    assert.equal(payload.response_status, 404);
    assert.deepEqual(payload.errors, ["Not found"]);
    return true;
  });
  await assert.rejects(client.create("tasks", { list_id: listId }), (payload) => {
    assert.equal(payload.response_status, 400);
    assert.deepEqual(payload.errors, [{ text: ["This field is required."] }]);
    return true;
  });
});

test("subscribe: update and delete events reach the callback; cancel stops them", async () => {
  const task = await client.create("tasks", { text: "bread", list_id: listId });
  const seen = [];
  const subscription = client.subscribe("tasks", task.id, (data, action) => seen.push({ action, data }), "follow-bread");
  // The reply to subscribe_instance: {"seq": S} in rest-live.
  const reply = await subscription;
  assert.equal(typeof reply.seq, "number");

  // A write over HTTP, by someone else.
  const patched = await api(server.url, "PATCH", `/api/tasks/${task.id}/`, { done: true });
  assert.equal(patched.status, 200);
  await until(() => seen.length === 1, "the update event");
  assert.deepEqual(seen[0], { action: "update", data: { ...task, done: true } });

  // A write over this very socket.
  await client.patch("tasks", task.id, { text: "rye bread" });
  await until(() => seen.length === 2, "the second update event");
  assert.deepEqual(seen[1], { action: "update", data: { ...task, done: true, text: "rye bread" } });

  const deleted = await api(server.url, "DELETE", `/api/tasks/${task.id}/`);
  assert.equal(deleted.status, 204);
  await until(() => seen.length === 3, "the delete event");
  // {"pk": 7} on the wire; the client moves it to pkField.
  assert.deepEqual(seen[2], { action: "delete", data: { id: task.id } });

  // cancel() forgets the subscription in the client (it sends nothing: see the next test).
  assert.equal(subscription.cancel(), true);
  assert.equal(subscription.cancel(), false);
});

test("unsubscribe: cancel() is local; unsubscribe_instance releases the server side", async () => {
  const task = await client.create("tasks", { text: "eggs", list_id: listId });
  const seen = [];
  const subscription = client.subscribe("tasks", task.id, (data, action) => seen.push({ action, data }), "follow-eggs");
  await subscription;
  subscription.cancel();
  await api(server.url, "PATCH", `/api/tasks/${task.id}/`, { done: true });
  await sleep(300);
  assert.deepEqual(seen, [], "no callback after cancel()");

  // dcrf-client 0.3.0 never sends an unsubscription; its generic request() can, with the
  // subscription's request_id (PROTOCOL.md: unsubscribe_instance, pk + request_id).
  assert.equal(await client.request("tasks", { action: "unsubscribe_instance", pk: task.id }, "follow-eggs"), null);
  // Now the server has nothing left to stop for that request_id.
  await assert.rejects(
    client.request("tasks", { action: "unsubscribe_instance", pk: task.id }, "follow-eggs"),
    (payload) => payload.response_status === 404,
  );
});
