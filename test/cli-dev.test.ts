/**
 * `tributary dev` as a user runs it, with its embedded PostgreSQL in one
 * temporary data folder that every test uses (the first initialises it): a second
 * `dev` on a folder in use fails with what is wrong and the server's own log,
 * exit 1, and the first keeps running; a taken port says so; a demo restarted
 * after a kill -9 that left events in the WAL continues its order numbering.
 *
 * Waits are conditions; their deadlines come from the demo's rate and the dev
 * relay's status interval, with room for a slow, shared machine.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres, { type Sql } from "postgres";
import { freePort } from "@tributary/testkit";
import { DEV_RELAY_STATUS_INTERVAL_MS } from "../apps/cli/src/internal/dev-settings.ts";
import { killCliChildren, runCli, startCli } from "./support/cli.ts";
import { promtoolCheck, sample, scrape } from "./support/metrics.ts";

const RATE = 30; // demo events per second: an order (three events) every 100 ms
// The slack a shared 2-core machine needs over what the settings promise.
const SLACK = 10;
const eventsWithinMs = (events: number) => SLACK * (events / RATE * 1000 + 2 * DEV_RELAY_STATUS_INTERVAL_MS) + 10_000;
// Booting the CLI, initdb on the first run, PostgreSQL's start, migrate, the relay's
// start: machine work, no setting bounds it.
const START_MS = 90_000;
const TWO_STARTS_MS = 2 * START_MS + 60_000;

let root: string;
let dataDir: string;
const clients: Sql[] = [];

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "tributary-dev-test-"));
  chmodSync(root, 0o755); // as root, the embedded PostgreSQL runs as user postgres and must reach its folder
  dataDir = join(root, "db");
});

afterEach(async () => {
  killCliChildren();
  await Promise.all(clients.splice(0).map((sql) => sql.end({ timeout: 0 }).catch(() => undefined)));
  await stopServerOf(dataDir); // a dev killed with SIGKILL leaves its PostgreSQL running
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

async function until<T>(probe: () => T | Promise<T>, what: string, timeoutMs: number, output?: { stderr: string }): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${output ? `; its output:\n${output.stderr}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function postmasterPid(dir: string): number | null {
  try {
    return Number(readFileSync(join(dir, "postmaster.pid"), "utf8").split("\n")[0]);
  } catch {
    return null;
  }
}

async function stopServerOf(dir: string): Promise<void> {
  const pid = postmasterPid(dir);
  if (!pid) return;
  try {
    process.kill(pid, "SIGINT"); // fast shutdown
  } catch {
    return; // already gone (a stale file is PostgreSQL's own to clear)
  }
  await until(() => !existsSync(join(dir, "postmaster.pid")), `PostgreSQL ${pid} to stop`, 30_000);
}

/** `tributary dev --demo` on the test's folder; resolves once it printed its URL and the demo numbered its first order. */
async function startDev(port: number, extra: string[] = []) {
  const dev = startCli(["dev", "--demo", "--rate", String(RATE), "--data-dir", dataDir, "--port", String(port), ...extra]);
  const url = await until(() => /^DATABASE_URL=(\S+)$/m.exec(dev.output.stdout)?.[1] ?? (dev.child.exitCode === null ? null : "exited"), "dev to print its URL", START_MS, dev.output);
  if (url === "exited") throw new Error(`tributary dev exited ${dev.child.exitCode}:\n${dev.output.stderr}`);
  const firstOrder = Number(await until(() => /^\[demo\] .* from order-(\d+)$/m.exec(dev.output.stderr)?.[1], "the demo to start", START_MS, dev.output));
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  clients.push(sql);
  return { ...dev, sql, firstOrder };
}

async function stopDev(dev: Awaited<ReturnType<typeof startDev>>) {
  dev.child.kill("SIGTERM");
  const exit = await dev.exited;
  expect(exit.code, exit.stderr).toBe(0);
}

async function demoEvents(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`select count(*)::int as n from tributary.events where stream = 'orders'`;
  return row!.n;
}

/** Each order-N key's event types in offset (commit) order. */
async function orderHistories(sql: Sql): Promise<Map<number, string[]>> {
  const rows = await sql<{ key: string; types: string[] }[]>`
    select key, array_agg(type order by "offset") as types from tributary.events where stream = 'orders' group by key`;
  return new Map(rows.map((r) => [Number(/^order-(\d+)$/.exec(r.key)![1]), r.types]));
}

describe("tributary dev", () => {
  it("a second dev on a data folder in use exits 1 naming the server that holds it, with PostgreSQL's log; the first keeps running", async () => {
    const port = await freePort();
    const first = await startDev(port);
    const pid = postmasterPid(dataDir);
    expect(pid).toBeGreaterThan(0);

    const otherPort = await freePort();
    const second = await runCli(["dev", "--data-dir", dataDir, "--port", String(otherPort)], {}, START_MS);
    expect(second.code, second.stderr).toBe(1);
    expect(second.stderr).toContain(
      `tributary dev: the data folder ${dataDir} is in use by another PostgreSQL server (pid ${pid}, listening on port ${port}), ` +
        "most likely a `tributary dev` (or `npm start`) still running",
    );
    expect(second.stderr).toContain(`DATABASE_URL=postgres://postgres:tributary@127.0.0.1:${port}/postgres`);
    expect(second.stderr).toContain(`kill ${pid}`);
    expect(second.stderr).toMatch(new RegExp(`--data-dir ${dataDir}-2 --port \\d+`));
    expect(second.stderr).toMatch(/^PostgreSQL's log:\n {2}.*FATAL: {2}lock file "postmaster\.pid" already exists\n {2}.*HINT: {2}Is another postmaster \(PID \d+\) running/m);
    expect(second.stderr).not.toMatch(/undefined|port taken/);

    // The first still runs: the same server holds the folder, and its demo and relay go on.
    expect(first.child.exitCode).toBeNull();
    expect(postmasterPid(dataDir)).toBe(pid);
    const before = await demoEvents(first.sql);
    await until(async () => (await demoEvents(first.sql)) >= before + 2 * 3, "the first dev to relay two more orders", eventsWithinMs(2 * 3), first.output);
    await stopDev(first);
  }, TWO_STARTS_MS);

  it("a port another program listens on: exits 1 saying the port is taken and which one is free, with PostgreSQL's log", async () => {
    const listener = createServer();
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    const port = (listener.address() as { port: number }).port;
    try {
      const run = await runCli(["dev", "--data-dir", dataDir, "--port", String(port)], {}, START_MS);
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr).toContain(`tributary dev: port ${port} is taken: another program (often another PostgreSQL) already listens on 127.0.0.1:${port}`);
      expect(run.stderr).toMatch(/give another port: --port \d+ is free now/);
      expect(run.stderr).toMatch(/^PostgreSQL's log:\n(?: {2}.*\n)* {2}.*LOG: {2}could not bind IPv4 address "127\.0\.0\.1": Address already in use$/m);
    } finally {
      listener.close();
    }
  });

  it("a demo restarted after a kill -9 that left its last orders in the WAL continues at the next order number", async () => {
    const port = await freePort();
    const first = await startDev(port);
    await until(async () => (await demoEvents(first.sql)) >= 2 * 3, "the demo's first orders to be relayed", eventsWithinMs(2 * 3), first.output);

    // Hold the relay's checkpoint so its next batch cannot commit, let the demo
    // append two more orders into the WAL, and kill the process: those orders
    // are committed but not in tributary.events when the next dev starts.
    let release!: () => void;
    const held = first.sql.begin(async (tx) => {
      await tx`lock table tributary.relay_checkpoints in share mode`;
      await new Promise<void>((resolve) => (release = resolve));
    }).catch(() => undefined);
    await until(() => release, "the checkpoint lock", eventsWithinMs(0));
    const highestRelayed = Math.max(...(await orderHistories(first.sql)).keys());
    const appended = () => Number([...first.output.stderr.matchAll(/^appended (\d+)/gm)].at(-1)?.[1] ?? 0);
    const appendedAtLock = appended();
    await until(() => appended() >= appendedAtLock + 2 * 3, "the demo to append two orders the relay cannot write", eventsWithinMs(2 * 3), first.output);
    first.child.kill("SIGKILL");
    await first.exited;
    release();
    await held;
    await stopServerOf(dataDir);

    const second = await startDev(port, ["--metrics-port", "0"]);
    // Everything before the restart is relayed once the second demo's orders are.
    await until(async () => (await orderHistories(second.sql)).has(second.firstOrder + 1), "the restarted demo's orders to be relayed", eventsWithinMs(2 * 3), second.output);
    const histories = await orderHistories(second.sql);
    const numbers = [...histories.keys()].sort((a, b) => a - b);
    // The killed session's last orders were in the WAL only, and were counted.
    expect(second.firstOrder).toBeGreaterThan(highestRelayed + 1);
    expect(Math.max(...numbers.filter((n) => n < second.firstOrder))).toBe(second.firstOrder - 1);
    // No order has a second history, and no number was skipped.
    const full = ["OrderPlaced", "OrderPaid", "OrderShipped"];
    for (const [n, types] of histories) expect(types, `order-${n}`).toEqual(full.slice(0, types.length));
    expect(numbers).toEqual(numbers.map((_, i) => i));

    // dev serves the relay's metrics and the database's: the relay wrote this session's orders, the stream holds all of them.
    const metricsUrl = /^metrics at (\S+)$/m.exec(second.output.stderr)?.[1];
    expect(metricsUrl, second.output.stderr).toBeDefined();
    // The demo goes on appending: what the stream held before the scrape is a floor of what the scrape reports.
    const relayedBefore = await demoEvents(second.sql);
    const text = await scrape(metricsUrl!);
    expect(sample(text, "tributary_relay_active", { slot: "tributary" })).toBe(1);
    expect(sample(text, "tributary_relay_events_total", { slot: "tributary" })).toBeGreaterThan(0);
    expect(sample(text, "tributary_stream_events_total", { stream: "orders" })).toBeGreaterThanOrEqual(relayedBefore);
    expect(await promtoolCheck(text)).toEqual({ code: 0, output: "" });
    await stopDev(second);
  }, TWO_STARTS_MS);
});
