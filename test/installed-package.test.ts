/**
 * The published packages as a user gets them: `npm pack` every publishable
 * workspace, install the tarballs into a new project outside the repository
 * (their dependencies from the registry, served by npm's cache; no workspace
 * links), and run the whole path from there against a real PostgreSQL:
 * `npx tributary migrate`, `npx tributary relay` in the background, a plain
 * Node script appending inside its transaction, a consumer group member that
 * receives the events, a queue worker that completes a job, and `tsc --strict`
 * on a TypeScript file using the public API through the installed
 * declarations. What this catches is packaging: a file missing from `files`,
 * exports or declarations that do not resolve, a dependency a package uses but
 * does not declare, migrations the installed migrator cannot find.
 *
 * It tests dist/, so the packages must be built (`npm test` builds them first;
 * otherwise `npm run build`).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionFor } from "@tributary/client";
import { publishableWorkspaces, userEnvironment } from "@tributary/testkit";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { eventually } from "./support/processes.ts";
import { repoRoot } from "./support/cli.ts";

const backend = backends().find((b) => b.decoder === "pgoutput")!;

/**
 * A bound on starting a Node process (npx, the CLI, a script) up to its first
 * query, or on its exit, on a loaded machine. Every wait below is this plus what the
 * component's own settings allow; none is an expectation of how fast it is.
 */
const PROCESS_START_MS = 30_000;
/** The relay's --write-timeout: a batch write that takes longer ends the relay's session. */
const RELAY_WRITE_TIMEOUT_S = 10;
/** `tributary relay`: SIGTERM/SIGINT exit 0 within 5 s (README, CLI). */
const RELAY_SHUTDOWN_MS = 5_000;
/** The consumer's fallback poll when no NOTIFY arrives (ConsumerOptions.pollIntervalMs, default). */
const CONSUMER_POLL_MS = 2_000;
/** work(): how long stop() lets a handler finish (WorkOptions.gracefulMs, default). */
const WORKER_GRACEFUL_MS = 10_000;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface Started {
  readonly child: ChildProcess;
  readonly output: { stdout: string; stderr: string };
  readonly exited: Promise<Run>;
}

const started = new Set<ChildProcess>();

/** Starts a command in its own process group (so it and what it starts can be killed together). */
function start(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Started {
  const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  started.add(child);
  const output = { stdout: "", stderr: "" };
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output.stdout += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output.stderr += chunk));
  const exited = new Promise<Run>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => {
      started.delete(child);
      resolve({ code, signal, ...output });
    });
  });
  return { child, output, exited };
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // already gone
  }
}

/** Waits for the exit of a started command; kills its process group and fails after `timeoutMs`. */
async function exitOf(run: Started, what: string, timeoutMs: number): Promise<Run> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
  const result = await Promise.race([run.exited, timeout]);
  clearTimeout(timer);
  if (result) return result;
  killGroup(run.child, "SIGKILL");
  throw new Error(`${what} did not exit within ${timeoutMs} ms; stdout:\n${run.output.stdout.slice(-3000)}\nstderr:\n${run.output.stderr.slice(-3000)}`);
}

async function runToExit(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Run> {
  return exitOf(start(command, args, cwd, env), `${command} ${args.join(" ")}`, timeoutMs);
}

const ok = (run: Run) => [run.code, run.signal, run.code === 0 ? "" : run.stderr.slice(-4000)];

// --- the user's project -----------------------------------------------------

const producerScript = `
import postgres from "postgres";
import { append, appendBatch } from "@tributary/client";

const sql = postgres(process.env.DATABASE_URL, { onnotice() {} });
await sql\`create table orders (id text primary key, total int not null)\`;
const ids = [];
// The business rows and their events in one transaction.
await sql.begin(async (tx) => {
  for (const [id, total] of [["o-1", 10], ["o-2", 20], ["o-3", 30]]) {
    await tx\`insert into orders (id, total) values (\${id}, \${total})\`;
    ids.push(await append(tx, { stream: "orders", key: id, type: "OrderPlaced", data: { total } }));
  }
  ids.push(await append(tx, { stream: "orders", key: "o-1", type: "OrderPaid", data: { total: 10 }, headers: { via: "card" } }));
});
// A rollback takes its event with it.
let rolledBack = null;
await sql.begin(async (tx) => {
  await tx\`insert into orders (id, total) values ('o-4', 40)\`;
  rolledBack = await append(tx, { stream: "orders", key: "o-4", type: "OrderPlaced", data: { total: 40 } });
  throw new Error("rolled back on purpose");
}).catch((error) => {
  if (error.message !== "rolled back on purpose") throw error;
});
await sql.begin(async (tx) => {
  ids.push(...(await appendBatch(tx, [
    { stream: "orders", key: "o-2", type: "OrderShipped", data: { total: 20 } },
    { stream: "orders", key: "o-1", type: "OrderShipped", data: { total: 10 } },
  ])));
});
await sql.end();
process.stdout.write(JSON.stringify({ ids, rolledBack }));
`;

const consumerScript = `
import postgres from "postgres";
import { consumer } from "@tributary/client";

const expected = Number(process.argv[2]);
const sql = postgres(process.env.DATABASE_URL, { onnotice() {} });
let all;
const received = new Promise((resolve) => (all = resolve));
let count = 0;
const member = await consumer(sql, {
  group: "installed-check",
  streams: ["orders"],
  handler: async (event) => {
    process.stdout.write(JSON.stringify({ partition: event.partition, offset: event.offset, id: event.id, key: event.key, type: event.type, data: event.data, headers: event.headers }) + "\\n");
    if (++count === expected) all();
  },
  log: (message) => console.error(message),
});
console.error("joined as " + member.memberId);
await received;
await member.stop();
await sql.end();
`;

const workerScript = `
import postgres from "postgres";
import { createQueue, send, work } from "@tributary/client";

const sql = postgres(process.env.DATABASE_URL, { onnotice() {} });
await createQueue(sql, "shipments", { notifyStates: true });
await sql\`create table shipped (job_id bigint primary key, order_id text not null)\`;
const job = await sql.begin((tx) => send(tx, "shipments", { order: "o-1" }));
let handled;
const done = new Promise((resolve) => (handled = resolve));
const worker = await work(sql, "shipments", async (message) => {
  await sql\`insert into shipped (job_id, order_id) values (\${message.id}, \${message.payload.order})\`;
  handled(message);
}, { log: (message) => console.error(message) });
const message = await done;
await worker.stop();
await sql.end();
process.stdout.write(JSON.stringify({ job, handled: message.id, deliveries: message.deliveries }));
`;

/**
 * The public API through the installed declarations. Each @ts-expect-error
 * fails the check when the type it probes resolved to \`any\` (a declaration
 * file not shipped, a dependency's types not installed): the check runs with
 * skipLibCheck, as most projects do, so a declaration that does not resolve
 * shows only as an \`any\` in the user's code. Type-checking effect's
 * declarations too would triple the compiler's time for nothing of ours.
 */
const typedScript = `
import postgres from "postgres";
import { append, consumer, createQueue, partitionFor, send, work, TributaryInputError, type ClaimedMessage, type StreamEvent } from "@tributary/client";
import { migrate, readMigrations } from "@tributary/migrate";
import { startRelay, type RelayConfig } from "@tributary/relay";
import { startBridge, type BridgeConfig } from "@tributary/kafka-bridge";
import { Lsn, type ReplicationSourceOptions } from "@tributary/wal";

export async function main(url: string): Promise<void> {
  const sql = postgres(url);
  const migrated = await migrate(sql, { slotName: "app" });
  const files: number = readMigrations().length + migrated.applied.length;
  const id: string = await sql.begin((tx) => append(tx, { stream: "orders", key: "o-1", type: "OrderPlaced", data: { total: 1 } }));
  // @ts-expect-error data is required
  await append(sql, { stream: "orders", key: "o-1", type: "OrderPlaced" });
  // @ts-expect-error postgres.js's types: an executor is a Sql or a transaction, not a URL
  await append(url, { stream: "orders", key: "o-1", type: "OrderPlaced", data: null });
  // @ts-expect-error a partition is a number
  const partition: string = partitionFor("o-1", 8);
  const member = await consumer(sql, {
    group: "billing",
    streams: ["orders"],
    handler: async (event: StreamEvent, { tx }) => {
      const offset: number = event.offset;
      const { total } = event.data as { total: number };
      if (tx) await tx\`select \${offset}::bigint, \${total}::int\`;
    },
  });
  await member.stop();
  // @ts-expect-error effect's types: a retry is a Schedule
  await consumer(sql, { group: "billing", streams: ["orders"], handler: () => {}, retry: 5 });
  await createQueue(sql, "emails", { visibilityTimeout: 30 });
  const job: string = await send(sql, "emails", { to: "a@example.com" });
  const worker = await work<{ to: string }>(sql, "emails", (message: ClaimedMessage<{ to: string }>, { signal }) => {
    const to: string = message.payload.to;
    // @ts-expect-error the payload is typed
    const wrong: number = message.payload.to;
    return signal.aborted ? undefined : [to, wrong];
  });
  await worker.stop();
  const config: RelayConfig = { databaseUrl: url, slotName: "app", takeoverAfterMs: 15_000 };
  const relay = startRelay(config);
  await relay.stop();
  // @ts-expect-error databaseUrl is required
  startRelay({ slotName: "app" });
  const bridge: BridgeConfig = { databaseUrl: url, streams: ["orders"], kafka: { brokers: ["localhost:9092"] } };
  // @ts-expect-error kafkajs's KafkaConfig: brokers are strings
  const badBridge: BridgeConfig = { databaseUrl: url, streams: ["orders"], kafka: { brokers: [9092] } };
  // @ts-expect-error node-postgres's ClientConfig: a port is a number
  const source: ReplicationSourceOptions = { connection: { port: "5432" }, slotName: "app", decoder: "pgoutput" };
  void [files, id, partition, job, bridge, badBridge, source, startBridge, Lsn, TributaryInputError];
  await sql.end();
}
`;

describe(`installed packages [${backend.name}]`, () => {
  const workspaces = publishableWorkspaces();
  const migrationFiles = readdirSync(join(repoRoot, "migrations")).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
  let temp: string;
  let projectDir: string | null = null;
  /** The installed project (the first test makes it). */
  const installed = (): string => {
    if (!projectDir) throw new Error("the packages were not installed: see the first test");
    return projectDir;
  };
  let db: TestDatabase | null = null;

  beforeAll(async () => {
    expect(workspaces.map((w) => w.manifest.name)).toEqual(expect.arrayContaining(["@tributary/client", "@tributary/wal", "@tributary/migrate", "@tributary/relay", "@tributary/kafka-bridge", "@tributary/cli"]));
    for (const { dir, manifest } of workspaces) {
      const built = [
        ...Object.values(manifest.exports ?? {}).flatMap((conditions) => [conditions.types, conditions.default]),
        ...(manifest.bin ? ["dist"] : []),
      ].filter((file): file is string => typeof file === "string");
      for (const file of built) {
        if (!existsSync(join(dir, file))) throw new Error(`${manifest.name}: ${file} is missing: build the packages first (npm run build)`);
      }
    }
    temp = mkdtempSync(join(tmpdir(), "tributary-installed-"));
    expect(relative(repoRoot, realpathSync(temp)).startsWith(".."), `${temp} must be outside the repository (set TMPDIR)`).toBe(true);
  });

  afterAll(async () => {
    for (const child of started) killGroup(child, "SIGKILL");
    await db?.drop();
    if (temp) rmSync(temp, { recursive: true, force: true });
  });

  it("npm pack ships each package's built files and no sources or tests", async () => {
    const packs = join(temp, "packs");
    mkdirSync(packs);
    const pack = await runToExit("npm", ["pack", ...workspaces.flatMap((w) => ["--workspace", w.manifest.name]), "--pack-destination", packs, "--json"], repoRoot, userEnvironment(), 120_000);
    expect(ok(pack)).toEqual([0, null, ""]);
    const packed = JSON.parse(pack.stdout) as Array<{ name: string; filename: string; files: Array<{ path: string }> }>;
    expect(packed.map((p) => p.name).sort()).toEqual(workspaces.map((w) => w.manifest.name).sort());
    for (const { name, files } of packed) {
      const paths = files.map((f) => f.path);
      const { manifest } = workspaces.find((w) => w.manifest.name === name)!;
      expect(paths.filter((p) => p.startsWith("src/") || /\.test\./.test(p) || p.startsWith("node_modules/")), name).toEqual([]);
      const entries = Object.values(manifest.exports ?? {}).flatMap((c) => [c.types, c.default]).filter((f): f is string => typeof f === "string");
      for (const entry of entries) expect(paths, name).toContain(entry.replace(/^\.\//, ""));
      for (const bin of Object.values(manifest.bin ?? {})) expect(paths, name).toContain(bin.replace(/^\.\//, ""));
    }
    const migrate = packed.find((p) => p.name === "@tributary/migrate")!;
    expect(migrate.files.map((f) => f.path).filter((p) => p.startsWith("migrations/")).sort()).toEqual(migrationFiles.map((f) => `migrations/${f}`));

    // A new project, as after `npm init -y`, with the tarballs and a TypeScript toolchain. No
    // allowScripts: npm 11 runs no dependency's install script, and these commands need none.
    const project = join(temp, "app");
    mkdirSync(project);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "tributary-installed-check", version: "1.0.0", private: true, type: "module" }, null, 2));
    const versionOf = (name: string) => (JSON.parse(readFileSync(join(repoRoot, "node_modules", name, "package.json"), "utf8")) as { version: string }).version;
    const install = await runToExit("npm", [
      "install", "--prefer-offline", "--no-audit", "--no-fund",
      ...packed.map((p) => join(packs, p.filename)),
      `typescript@${versionOf("typescript")}`, `@types/node@${versionOf("@types/node")}`,
    ], project, userEnvironment(), 180_000);
    expect(ok(install)).toEqual([0, null, ""]);

    // Real folders in the project, nothing linked back into the repository.
    const modules = join(project, "node_modules");
    const entries = readdirSync(modules).filter((e) => e !== ".bin" && !e.startsWith("."))
      .flatMap((e) => (e.startsWith("@") ? readdirSync(join(modules, e)).map((s) => `${e}/${s}`) : [e]));
    expect(entries.filter((e) => lstatSync(join(modules, e)).isSymbolicLink())).toEqual([]);
    for (const { manifest } of workspaces) {
      const dir = join(modules, manifest.name);
      expect(lstatSync(dir).isDirectory(), manifest.name).toBe(true);
      expect(realpathSync(dir).startsWith(realpathSync(project)), manifest.name).toBe(true);
      expect(existsSync(join(dir, "node_modules", "@tributary")), `${manifest.name} got its own copy of a @tributary package`).toBe(false);
    }
    expect(existsSync(join(modules, "@tributary", "testkit"))).toBe(false);
    projectDir = project;
  });

  it("node_modules/.bin/tributary prints its usage and version", async () => {
    const project = installed();
    const bin = join(project, "node_modules", ".bin", "tributary");
    const [help, version] = await Promise.all([
      runToExit(bin, ["--help"], project, userEnvironment(), PROCESS_START_MS),
      runToExit(bin, ["--version"], project, userEnvironment(), PROCESS_START_MS),
    ]);
    expect(ok(help)).toEqual([0, null, ""]);
    expect(help.stdout).toMatch(/^Usage: tributary <command>/);
    for (const command of ["dev", "migrate", "relay", "tail", "status"]) expect(help.stdout).toMatch(new RegExp(`^  ${command} `, "m"));
    const cli = workspaces.find((w) => w.manifest.name === "@tributary/cli")!;
    expect(ok(version)).toEqual([0, null, ""]);
    expect(version.stdout).toBe(`tributary ${cli.manifest.version}\n`);
  });

  it("migrate, relay, append, a consumer group member and a queue worker, all from the installed packages", async () => {
    const project = installed();
    db = await createTestDatabase(backend, { migrate: false });
    const env = userEnvironment({ DATABASE_URL: db.url });
    const slot = db.slotName;
    writeFileSync(join(project, "producer.mjs"), producerScript);
    writeFileSync(join(project, "consumer.mjs"), consumerScript);
    writeFileSync(join(project, "worker.mjs"), workerScript);

    const migrate = await runToExit("npx", ["--no", "tributary", "migrate", "--slot", slot], project, env, PROCESS_START_MS);
    expect(ok(migrate)).toEqual([0, null, ""]);
    expect(migrate.stderr).toContain(`schema up to date (${migrationFiles.length} applied, 0 already applied); slot '${slot}' (pgoutput) ready`);
    const applied = await db.sql<{ version: number }[]>`select version from tributary.schema_migrations order by version`;
    expect(applied.map((m) => m.version)).toEqual(migrationFiles.map((f) => Number(f.slice(0, 4))));

    const relay = start("npx", ["--no", "tributary", "relay", "--slot", slot, "--write-timeout", String(RELAY_WRITE_TIMEOUT_S)], project, env);
    const relayLog = () => relay.output.stderr.slice(-3000);
    await eventually("the relay active", () => {
      if (relay.child.exitCode !== null) throw new Error(`the relay exited ${relay.child.exitCode}: ${relayLog()}`);
      return relay.output.stderr.includes(`active on slot '${slot}' (pgoutput)`);
    }, PROCESS_START_MS).catch((error: Error) => {
      throw new Error(`${error.message}; its log:\n${relayLog()}`);
    });

    // Job states as they commit, heard on the test's own connection from before the job exists.
    const jobStates: Array<{ queue: string; id: string; state: string }> = [];
    const listening = await db.sql.listen("tributary_jobs", (payload) => {
      const change = JSON.parse(payload) as { queue: string; id: number; state: string };
      jobStates.push({ ...change, id: String(change.id) });
    });

    const produced = await runToExit("node", ["producer.mjs"], project, env, PROCESS_START_MS);
    expect(ok(produced)).toEqual([0, null, ""]);
    const { ids, rolledBack } = JSON.parse(produced.stdout) as { ids: string[]; rolledBack: string };
    expect(ids).toHaveLength(6);

    const consumed = start("node", ["consumer.mjs", String(ids.length)], project, env);
    const worked = start("node", ["worker.mjs"], project, env);

    // In the stream: the committed events, dense offsets per partition, in commit (and append) order.
    const [stream] = await db.sql<{ partitions: number }[]>`select partitions from tributary.streams where name = 'orders'`;
    const partitions = stream!.partitions;
    const appended = [
      ["o-1", "OrderPlaced"], ["o-2", "OrderPlaced"], ["o-3", "OrderPlaced"], ["o-1", "OrderPaid"],
      ["o-2", "OrderShipped"], ["o-1", "OrderShipped"],
    ].map(([key, type], i) => ({ id: ids[i]!, key: key!, type: type!, partition: partitionFor(key!, partitions) }));
    const expected = [...new Set(appended.map((e) => e.partition))].sort((a, b) => a - b).flatMap((partition) =>
      appended.filter((e) => e.partition === partition).map((e, offset) => ({ partition, offset, id: e.id, key: e.key, type: e.type })));
    const readStream = () => db!.sql<Array<{ partition: number; offset: number; id: string; key: string; type: string }>>`
      select partition, "offset"::int as "offset", id::text as id, key, type from tributary.events where stream = 'orders' order by partition, "offset"`;
    await eventually("the relay to write the committed events", async () => (await readStream()).length >= ids.length, PROCESS_START_MS + RELAY_WRITE_TIMEOUT_S * 1000);
    expect([...(await readStream())]).toEqual(expected);
    const [aborted] = await db.sql<{ n: number }[]>`select count(*)::int as n from tributary.events where id = ${rolledBack}`;
    expect(aborted!.n).toBe(0);

    // The group member received exactly those events, each partition in offset order, and committed past them.
    const member = await exitOf(consumed, "the consumer", PROCESS_START_MS + RELAY_WRITE_TIMEOUT_S * 1000 + CONSUMER_POLL_MS);
    expect(ok(member)).toEqual([0, null, ""]);
    const received = member.stdout.trim().split("\n").map((line) => JSON.parse(line) as { partition: number; offset: number; id: string; key: string; type: string; data: unknown; headers: unknown });
    expect(received.map(({ data: _data, headers: _headers, ...event }) => event).sort((a, b) => a.partition - b.partition || a.offset - b.offset)).toEqual(expected);
    for (const partition of new Set(received.map((e) => e.partition))) {
      const offsets = received.filter((e) => e.partition === partition).map((e) => e.offset);
      expect(offsets, `partition ${partition} in offset order`).toEqual([...offsets].sort((a, b) => a - b));
    }
    const paid = received.find((e) => e.type === "OrderPaid");
    expect([paid?.data, paid?.headers]).toEqual([{ total: 10 }, { via: "card" }]);
    const committed = await db.sql<{ partition: number; next: number }[]>`
      select partition, next_offset::int as next from tributary.group_offsets where group_name = 'installed-check' and stream = 'orders' order by partition`;
    const ends = expected.reduce<Record<number, number>>((acc, e) => ({ ...acc, [e.partition]: e.offset + 1 }), {});
    expect(Object.fromEntries(committed.filter((c) => c.next > 0).map((c) => [c.partition, c.next]))).toEqual(ends);

    // The worker completed its job: handled once, acknowledged (gone from the queue), announced as succeeded.
    const job = await exitOf(worked, "the queue worker", PROCESS_START_MS + WORKER_GRACEFUL_MS);
    expect(ok(job)).toEqual([0, null, ""]);
    const outcome = JSON.parse(job.stdout) as { job: string; handled: string; deliveries: number };
    expect(outcome).toEqual({ job: outcome.job, handled: outcome.job, deliveries: 1 });
    expect(await db.sql`select order_id from shipped where job_id = ${outcome.job}`).toEqual([{ order_id: "o-1" }]);
    expect(await db.sql`select id from tributary.queue_messages where id = ${outcome.job}`).toEqual([]);
    expect(await db.sql`select id from tributary.queue_dead_letters where queue = 'shipments'`).toEqual([]);
    await eventually("the job's succeeded notification", () => jobStates.some((s) => s.id === outcome.job && s.state === "succeeded"), PROCESS_START_MS);
    expect(jobStates.filter((s) => s.id === outcome.job).map((s) => s.state)).toEqual(["queued", "running", "succeeded"]);
    await listening.unlisten();

    // SIGTERM to the command's process group, as a terminal's Ctrl-C or a container's stop does:
    // npm exec runs the relay under `sh -c`, and a SIGTERM sent to npx alone leaves the relay running.
    // The relay stops in time (its pipes close only when it has exited) and lets go of its slot.
    expect(relay.child.exitCode, relayLog()).toBe(null);
    killGroup(relay.child, "SIGTERM");
    const stopped = await exitOf(relay, "the relay after SIGTERM", RELAY_SHUTDOWN_MS + PROCESS_START_MS);
    expect(stopped.stderr).toContain("[tributary] SIGTERM: stopping");
    expect(stopped.stderr).not.toContain("error while stopping");
    await eventually("the slot released (its walsender gone with the relay's connection)", async () => {
      const [row] = await db!.sql<{ active: boolean }[]>`select active from pg_replication_slots where slot_name = ${slot}`;
      return row?.active === false;
    }, PROCESS_START_MS);
  });

  it("tsc --strict accepts the public API through the installed declarations (NodeNext)", async () => {
    const project = installed();
    writeFileSync(join(project, "check.ts"), typedScript);
    writeFileSync(join(project, "tsconfig.json"), JSON.stringify({
      compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", strict: true, noEmit: true, skipLibCheck: true, types: ["node"] },
      files: ["check.ts"],
    }, null, 2));
    const tsc = await runToExit("node", [join("node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], project, userEnvironment(), 120_000);
    // Each error with the lines it points at (a probe's comment says what should have been typed).
    const lines = typedScript.split("\n");
    const explained = (tsc.stdout + tsc.stderr).replace(/^check\.ts\((\d+),\d+\): .*$/gm, (error, line: string) =>
      `${error}\n    ${lines[Number(line) - 2]?.trim()}\n    ${lines[Number(line) - 1]?.trim()}`);
    expect([tsc.code, explained]).toEqual([0, ""]);
  });
});
