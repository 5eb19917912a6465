// node-redis and ioredis, each with its default options, against the Redis
// server on the Unix socket given as the first argument: connect (each sends
// its own handshake: HELLO 3, and ioredis an INFO for its ready check),
// SET and GET, a MULTI/EXEC transaction, then quit. Exits 0 when every step gave what Redis gives,
// else prints one line per difference and exits 1. The libraries come from
// npm (package.json, pinned in package-lock.json), found through NODE_PATH.
"use strict";
const { createClient } = require("redis");
const Redis = require("ioredis");

const socket = process.argv[2];
const failures = [];
function expect(what, got, want) {
  if (JSON.stringify(got) !== JSON.stringify(want))
    failures.push(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

async function nodeRedis() {
  // No reconnecting: a server that drops us must fail the run, not hang it.
  const client = createClient({ socket: { path: socket, reconnectStrategy: false } });
  client.on("error", (error) => failures.push(`node-redis error event: ${error.message}`));
  await client.connect();
  expect("node-redis SET", await client.set("node:k", "v1"), "OK");
  expect("node-redis GET", await client.get("node:k"), "v1");
  expect("node-redis GET of a missing key", await client.get("node:missing"), null);
  expect("node-redis INCR", await client.incr("node:counter"), 1);
  expect("node-redis MGET", await client.mGet(["node:k", "node:missing"]), ["v1", null]);
  const results = await client.multi().set("node:a", "1").incr("node:a").get("node:a").exec();
  expect("node-redis MULTI/EXEC", results, ["OK", 2, "2"]);
  await client.quit();
}

async function ioredis() {
  const client = new Redis({ path: socket, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on("error", (error) => failures.push(`ioredis error event: ${error.message}`));
  expect("ioredis SET", await client.set("io:k", "v1"), "OK");
  expect("ioredis GET", await client.get("io:k"), "v1");
  expect("ioredis GET of a missing key", await client.get("io:missing"), null);
  expect("ioredis INCR", await client.incr("io:counter"), 1);
  expect("ioredis MGET", await client.mget("io:k", "io:missing"), ["v1", null]);
  const results = await client.multi().set("io:a", "1").incr("io:a").get("io:a").exec();
  expect("ioredis MULTI/EXEC", results, [[null, "OK"], [null, 2], [null, "2"]]);
  expect("ioredis QUIT", await client.quit(), "OK");
}

(async () => {
  for (const [name, run] of [["node-redis", nodeRedis], ["ioredis", ioredis]]) {
    try {
      await run();
    } catch (error) {
      failures.push(`${name}: ${error.message}`);
    }
  }
  for (const failure of failures)
    console.error(failure);
  process.exit(failures.length ? 1 : 0);
})();
