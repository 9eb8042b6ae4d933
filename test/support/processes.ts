/**
 * What runs around the relay in fault-injection tests:
 *
 *   RelayChildren   relays in their own processes (test/support/relay-child.ts),
 *                   to kill -9 at chosen points of a batch: bundled once per
 *                   test file, spawned and followed with the testkit's
 *                   ChildBundle, spawnChild and ChildLines (the benchmarks'
 *                   harness too).
 *   SupervisedRelay a relay child replaced when it dies, deaths remembered.
 *   AppendWorkload  concurrent writers appending through the SQL API, some
 *                   transactions cut into several relay batches, some rolled
 *                   back. Each transaction also inserts its event ids into
 *                   `test_ledger` (a business table, the transactional outbox):
 *                   the ledger is the database's own word on what committed,
 *                   which settles commits whose outcome a crash hid.
 *   expectStreamMatchesLedger  the exactly-once check (invariants 1, 2, 3).
 */
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import pg from "pg";
import type { Sql } from "postgres";
import { expect } from "vitest";
import { partitionFor } from "@tributary/client";
import { ChildBundle, ChildLines, cliHeapLimit, spawnChild } from "@tributary/testkit";
import { RELAY_LOCK } from "@tributary/core";
import { assertDense, readAll } from "./streams.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true; fails with `what` after `timeoutMs`. */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------
// Relay children

export type CrashPoint = "before-write" | "after-commit" | "after-ack";

export interface RelayChildOptions {
  readonly databaseUrl: string;
  readonly slotName: string;
  readonly maxBatchEvents?: number;
  /** SIGKILL itself at this point of the `crashAfterBatches`-th batch. */
  readonly crashAt?: CrashPoint;
  readonly crashAfterBatches?: number;
  /** Report RSS every 200 ms (read with `peakRss()`). */
  readonly reportRss?: boolean;
  /** The relay's takeoverAfterMs (a standby takes over a relay that made no progress this long). */
  readonly takeoverAfterMs?: number;
  /** The relay's snapshotChunkRows and snapshotPollMs (table capture). */
  readonly snapshotChunkRows?: number;
  readonly snapshotPollMs?: number;
  /** The relay's retentionIntervalMs (segment-keeper.ts). */
  readonly retentionIntervalMs?: number;
}

export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/**
 * A relay child as the tests follow it: its "active" and "rss" lines, its
 * log, its exit (code and signal) — through the testkit's ChildLines, the
 * same harness the benchmarks' children use.
 */
export class RelayChild {
  /** How many times it printed "active" (once per session that took the lead). */
  activations = 0;
  exit: ChildExit | null = null;
  /** Set when the test killed it (as opposed to the child dying by itself). */
  killedByTest = false;
  readonly exited: Promise<ChildExit>;
  private readonly lines: ChildLines;
  private peak = 0;

  constructor(readonly process: ChildProcess) {
    this.lines = new ChildLines(process, {
      label: "relay child",
      stderrChars: 20_000,
      onLine: (tag, rest) => {
        if (tag === "active") this.activations++;
        else if (tag === "rss") this.peak = Math.max(this.peak, Number(rest));
      },
    });
    this.exited = new Promise((resolve) => {
      process.once("exit", (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
  }

  get pid(): number {
    return this.lines.pid;
  }

  /** Highest RSS the child reported (bytes), when started with `reportRss`. */
  peakRss(): number {
    return this.peak;
  }

  get alive(): boolean {
    return this.exit === null;
  }

  /** The child's log (stderr), for assertions and failure messages. */
  log(): string {
    return this.lines.stderr();
  }

  describe(): string {
    const exit = this.exit ? ` exited (code ${this.exit.code}, signal ${this.exit.signal})` : "";
    return `relay child ${this.pid}${exit}; its log:\n${this.log().split("\n").slice(-25).join("\n")}`;
  }

  async waitActive(activations = 1, timeoutMs = 20_000): Promise<void> {
    await eventually(`relay child to lead (active #${activations})`, () => {
      if (!this.alive) throw new Error(`expected it to lead, but ${this.describe()}`);
      return this.activations >= activations;
    }, timeoutMs);
  }

  async waitExit(timeoutMs: number): Promise<ChildExit> {
    const timeout = sleep(timeoutMs).then(() => null);
    const exit = await Promise.race([this.exited, timeout]);
    if (!exit) throw new Error(`relay child did not exit within ${timeoutMs} ms; ${this.describe()}`);
    return exit;
  }

  async kill(): Promise<ChildExit> {
    this.killedByTest = true;
    await this.lines.kill();
    return this.exited;
  }
}

/**
 * Keeps one relay child running, like a process supervisor would: when the
 * child dies by itself it is replaced, and the death is remembered. A fault
 * the relay is meant to ride out (restart, dropped connection) should leave
 * `deaths` empty; the replacement lets the test still check the stream.
 */
export class SupervisedRelay {
  readonly deaths: Array<{ exit: ChildExit; log: string }> = [];
  private readonly all: RelayChild[] = [];
  private stopped = false;
  current: RelayChild;

  constructor(
    private readonly children: RelayChildren,
    private readonly options: RelayChildOptions,
  ) {
    this.current = this.spawn();
  }

  /** "active" lines printed by all its children so far. */
  get activations(): number {
    return this.all.reduce((n, c) => n + c.activations, 0);
  }

  describeDeaths(): string {
    return this.deaths.map((d, i) => `death ${i + 1}: code ${d.exit.code}, signal ${d.exit.signal}; log:\n${d.log.split("\n").slice(-12).join("\n")}`).join("\n");
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.current.kill();
  }

  private spawn(): RelayChild {
    const child = this.children.start(this.options);
    this.all.push(child);
    void child.exited.then((exit) => {
      if (child.killedByTest || this.stopped) return;
      this.deaths.push({ exit, log: child.log() });
      this.current = this.spawn();
    });
    return child;
  }
}

/** Bundles a child-process fixture (with its dependencies) into a temp folder: one per test file. */
export function bundleFixture(entry: URL): Promise<ChildBundle> {
  return ChildBundle.build({ entries: { child: fileURLToPath(entry) } });
}

export class RelayChildren {
  private readonly running = new Set<RelayChild>();

  private constructor(private readonly bundle: ChildBundle) {}

  /** Bundles test/support/relay-child.ts (with its dependencies) into a temp folder. */
  static async build(): Promise<RelayChildren> {
    return new RelayChildren(await bundleFixture(new URL("./relay-child.ts", import.meta.url)));
  }

  start(options: RelayChildOptions): RelayChild {
    const child = new RelayChild(
      spawnChild(this.bundle.script("child"), {
        // The same V8 heap limit as `tributary relay`.
        nodeArgs: [cliHeapLimit],
        env: {
          DATABASE_URL: options.databaseUrl,
          SLOT: options.slotName,
          MAX_BATCH_EVENTS: String(options.maxBatchEvents ?? 5000),
          CRASH_AT: options.crashAt ?? "",
          CRASH_AFTER_BATCHES: String(options.crashAfterBatches ?? 0),
          REPORT_RSS: options.reportRss ? "1" : "",
          TAKEOVER_AFTER_MS: options.takeoverAfterMs === undefined ? "" : String(options.takeoverAfterMs),
          SNAPSHOT_CHUNK_ROWS: options.snapshotChunkRows === undefined ? "" : String(options.snapshotChunkRows),
          SNAPSHOT_POLL_MS: options.snapshotPollMs === undefined ? "" : String(options.snapshotPollMs),
          RETENTION_INTERVAL_MS: options.retentionIntervalMs === undefined ? "" : String(options.retentionIntervalMs),
        },
      }),
    );
    this.running.add(child);
    void child.exited.then(() => this.running.delete(child));
    return child;
  }

  /** SIGKILLs every child still running and waits for them to exit. */
  async killAll(): Promise<void> {
    await Promise.all([...this.running].map((c) => c.kill()));
  }

  async dispose(): Promise<void> {
    await this.killAll();
    this.bundle.dispose();
  }
}

// ---------------------------------------------------------------------------
// Relay connections, as the server sees them

export interface RelayBackends {
  /** The walsender streaming the slot. */
  readonly walsender: number | null;
  /** The session holding the relay's advisory lock. */
  readonly lockHolder: number | null;
  /** The relay's other connections (its pool: batches are written there). */
  readonly others: number[];
}

/** Backends of the relay(s) of the current database, by role. */
export async function relayBackends(sql: Sql, slotName: string): Promise<RelayBackends> {
  const [slot] = await sql<{ pid: number | null }[]>`
    select active_pid as pid from pg_replication_slots where slot_name = ${slotName}`;
  // The relay's lock: (RELAY_LOCK, hashtext(slot)), a two-key lock (objsubid 2).
  const [lock] = await sql<{ pid: number }[]>`
    select pid from pg_locks
     where locktype = 'advisory' and granted and objsubid = 2 and classid = ${RELAY_LOCK}
       and objid = (hashtext(${slotName})::bigint & 4294967295)::oid
       and database = (select oid from pg_database where datname = current_database())`;
  const walsender = slot?.pid ?? null;
  const lockHolder = lock?.pid ?? null;
  const rows = await sql<{ pid: number }[]>`
    select pid from pg_stat_activity
     where datname = current_database() and application_name like 'tributary-relay%' and pid <> pg_backend_pid()`;
  const others = rows.map((r) => r.pid).filter((pid) => pid !== walsender && pid !== lockHolder);
  return { walsender, lockHolder, others };
}

/**
 * Terminates a relay connection caught inside a transaction (a batch being
 * written), polling until one is caught. Returns its pid.
 */
/**
 * Terminates the relay's backends that are inside a transaction. With
 * `blockedBy`, only those waiting on a lock that backend holds: a test that
 * holds a row the writer needs then hits the writer, never another relay
 * query that happened to be running.
 */
export async function terminateRelayWriteInFlight(sql: Sql, timeoutMs = 10_000, blockedBy?: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    // Materialized: the filter must run before pg_terminate_backend sees any row.
    const [hit] = await sql<{ pid: number }[]>`
      with writing as materialized (
        select pid from pg_stat_activity
         where datname = current_database() and application_name = 'tributary-relay'
           and backend_type = 'client backend' and xact_start is not null and pid <> pg_backend_pid()
           and (${blockedBy ?? null}::int is null or ${blockedBy ?? null}::int = any (pg_blocking_pids(pid))))
      select pid from writing where pg_terminate_backend(pid)`;
    if (hit) return hit.pid;
    await sleep(5);
  }
  throw new Error(`no relay write in flight within ${timeoutMs} ms`);
}

export async function terminate(sql: Sql, pids: Array<number | null>): Promise<void> {
  for (const pid of pids) if (pid !== null) await sql`select pg_terminate_backend(${pid})`;
}

export interface SlotPosition {
  confirmedFlushLsn: string;
  active: boolean;
  activePid: number | null;
}

export async function slotPosition(sql: Sql, slotName: string): Promise<SlotPosition> {
  const [row] = await sql<{ confirmed_flush_lsn: string; active: boolean; active_pid: number | null }[]>`
    select confirmed_flush_lsn::text, active, active_pid from pg_replication_slots where slot_name = ${slotName}`;
  if (!row) throw new Error(`slot ${slotName} is gone`);
  return { confirmedFlushLsn: row.confirmed_flush_lsn, active: row.active, activePid: row.active_pid };
}

export interface CheckpointRow {
  commitLsn: string;
  endLsn: string;
  partialCommitLsn: string | null;
  partialEvents: number;
  version: number;
  relayId: string | null;
}

export async function readCheckpoint(sql: Sql, slotName: string): Promise<CheckpointRow> {
  const [row] = await sql<{ commit_lsn: string; end_lsn: string; partial_commit_lsn: string | null; partial_events: string; version: string; relay_id: string | null }[]>`
    select commit_lsn::text, end_lsn::text, partial_commit_lsn::text, partial_events::text, version::text, relay_id
      from tributary.relay_checkpoints where slot_name = ${slotName}`;
  if (!row) throw new Error(`no checkpoint for slot ${slotName}`);
  return {
    commitLsn: row.commit_lsn,
    endLsn: row.end_lsn,
    partialCommitLsn: row.partial_commit_lsn,
    partialEvents: Number(row.partial_events),
    version: Number(row.version),
    relayId: row.relay_id,
  };
}

// ---------------------------------------------------------------------------
// Writers

export interface WorkloadOptions {
  readonly writers: number;
  /** Streams the writers append to (created by the caller, or auto-created with 8 partitions). */
  readonly streams: readonly string[];
  /** Events per transaction, cycled; sizes above the relay's batch size get cut into chunks. */
  readonly sizes: readonly number[];
  /** Every n-th transaction of a writer appends and then rolls back. */
  readonly rollbackEvery: number;
  readonly pauseMs: number;
  /**
   * Keep going when a transaction fails for another reason than our rollback
   * (server restarts, dropped connections). Otherwise the workload stops and
   * stop() rejects with the error.
   */
  readonly tolerateErrors?: boolean;
}

export interface WorkloadReport {
  /** Ids whose COMMIT returned successfully. */
  readonly committed: string[];
  /** Ids of transactions we rolled back on purpose. */
  readonly rolledBack: string[];
  /** Ids whose COMMIT was sent but whose outcome we did not learn (connection lost). */
  readonly ambiguous: string[];
  readonly transactions: number;
  readonly errors: number;
}

/**
 * Writers on node-postgres connections, through the SQL API
 * (tributary.append_many, what the client's appendBatch calls). Not
 * postgres.js: in postgres.js 3.4.9 a transaction whose connection dies
 * issues its ROLLBACK on the dead socket and throws an uncaught TypeError
 * (porsager/postgres#1208), which would take the test worker down during a
 * server restart.
 */
export class AppendWorkload {
  private stopping = false;
  private readonly loops: Promise<void>[] = [];
  private readonly committed: string[] = [];
  private readonly rolledBack: string[] = [];
  private readonly ambiguous: string[] = [];
  private transactions = 0;
  private errors = 0;
  private failure: unknown = null;

  private constructor(
    private readonly databaseUrl: string,
    private readonly options: WorkloadOptions,
  ) {}

  /** Creates the ledger table and starts the writers. */
  static async start(sql: Sql, databaseUrl: string, options: WorkloadOptions): Promise<AppendWorkload> {
    await sql`create table if not exists test_ledger (id uuid primary key, stream text not null, key text not null, seq bigint not null)`;
    const workload = new AppendWorkload(databaseUrl, options);
    for (let w = 0; w < options.writers; w++) workload.loops.push(workload.writer(w));
    return workload;
  }

  async stop(): Promise<WorkloadReport> {
    this.stopping = true;
    await Promise.all(this.loops);
    if (this.failure) throw this.failure;
    return {
      committed: this.committed,
      rolledBack: this.rolledBack,
      ambiguous: this.ambiguous,
      transactions: this.transactions,
      errors: this.errors,
    };
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.databaseUrl, application_name: "test-writer" });
    client.on("error", () => {}); // a dropped idle connection: the next query fails and we reconnect
    await client.connect();
    return client;
  }

  private async writer(w: number): Promise<void> {
    const { streams, sizes, rollbackEvery, pauseMs } = this.options;
    let client: pg.Client | null = null;
    let seq = 0;
    for (let t = 0; !this.stopping; t++) {
      const size = sizes[(t + w) % sizes.length]!;
      const rollback = rollbackEvery > 0 && t % rollbackEvery === rollbackEvery - 1;
      const events = Array.from({ length: size }, (_, i) => ({
        stream: streams[(t + i) % streams.length]!,
        key: `w${w}-k${(t + i) % 5}`,
        data: JSON.stringify({ w, t, i }),
        headers: JSON.stringify({ writer: w }),
        seq: seq++,
      }));
      let ids: string[] = [];
      let commitSent = false;
      try {
        client ??= await this.connect();
        await client.query("begin");
        const appended = await client.query<{ ids: string[] }>(
          "select tributary.append_many($1::text[], $2::text[], $3::text[], $4::text[]::jsonb[], $5::text[]::jsonb[])::text[] as ids",
          [events.map((e) => e.stream), events.map((e) => e.key), events.map(() => "FaultTested"), events.map((e) => e.data), events.map((e) => e.headers)],
        );
        ids = appended.rows[0]!.ids;
        await client.query(
          "insert into test_ledger (id, stream, key, seq) select * from unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[])",
          [ids, events.map((e) => e.stream), events.map((e) => e.key), events.map((e) => e.seq)],
        );
        if (rollback) {
          await client.query("rollback");
          this.rolledBack.push(...ids);
        } else {
          commitSent = true;
          await client.query("commit");
          this.committed.push(...ids);
          this.transactions++;
        }
      } catch (error) {
        this.errors++;
        if (commitSent) this.ambiguous.push(...ids);
        void client?.end().catch(() => undefined);
        client = null;
        if (!this.options.tolerateErrors) {
          this.failure ??= error;
          this.stopping = true;
          return;
        }
        await sleep(100);
      }
      if (pauseMs > 0) await sleep(pauseMs);
    }
    await client?.end().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------
// The exactly-once check

/**
 * The stream equals exactly the events whose ledger rows committed
 * (invariant 1), offsets are dense per partition and match
 * tributary.partition_offsets (2), partitions follow murmur2 and, per key,
 * stream order is commit order (3). `report` cross-checks what the writers
 * saw: everything whose COMMIT returned is in, nothing rolled back is.
 */
export async function expectStreamMatchesLedger(sql: Sql, report?: WorkloadReport): Promise<void> {
  const ledger = await sql<{ id: string; stream: string; key: string; seq: string }[]>`
    select id::text, stream, key, seq::text from test_ledger`;
  const events = await readAll(sql);
  const streamIds = events.map((e) => e.id);
  const inStream = new Set(streamIds);
  const inLedger = new Map(ledger.map((l) => [l.id, l]));

  const duplicates = streamIds.length - inStream.size;
  const missing = ledger.filter((l) => !inStream.has(l.id)).map((l) => l.id);
  const extra = streamIds.filter((id) => !inLedger.has(id));
  expect({ duplicates, missing: missing.length, extra: extra.length }, `first missing ${missing.slice(0, 3)}, first extra ${extra.slice(0, 3)}`)
    .toEqual({ duplicates: 0, missing: 0, extra: 0 });
  expect(events.length).toBe(ledger.length);

  assertDense(events);
  const partitions = new Map((await sql<{ name: string; partitions: number }[]>`select name, partitions from tributary.streams`).map((s) => [s.name, s.partitions]));
  const counts = new Map<string, number>();
  const lastSeq = new Map<string, number>();
  for (const e of events) {
    const row = inLedger.get(e.id)!;
    // Plain comparisons first: expect() costs microseconds per call, and a
    // crash test checks tens of thousands of events. A mismatch goes through
    // expect() for its message.
    const writer = `w${(e.data as { w: number }).w}-`;
    const partition = partitionFor(e.key, partitions.get(e.stream)!);
    if (e.stream !== row.stream || e.key !== row.key || writer !== e.key.slice(0, e.key.indexOf("-") + 1) || e.partition !== partition) {
      expect([e.stream, e.key]).toEqual([row.stream, row.key]);
      expect(writer, "the event's data belongs to its key's writer").toBe(e.key.slice(0, e.key.indexOf("-") + 1));
      expect(e.partition, `partition of key ${e.key}`).toBe(partition);
    }
    const k = `${e.stream}/${e.partition}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
    // Each key is written by one writer, in sequence: its commit order is its seq order.
    const keyOrder = `${e.stream}/${e.key}`;
    const seq = Number(row.seq);
    const previous = lastSeq.get(keyOrder) ?? -1;
    if (seq <= previous) throw new Error(`key ${keyOrder}: seq ${seq} at offset ${e.offset} after seq ${previous}: stream order is not commit order`);
    lastSeq.set(keyOrder, seq);
  }
  const offsets = await sql<{ stream: string; partition: number; next_offset: string }[]>`
    select stream, partition, next_offset::text from tributary.partition_offsets`;
  expect(new Map(offsets.map((o) => [`${o.stream}/${o.partition}`, Number(o.next_offset)]))).toEqual(counts);

  if (report) {
    expect(report.committed.filter((id) => !inStream.has(id)), "committed (COMMIT returned) but not in the stream").toEqual([]);
    expect(report.rolledBack.filter((id) => inStream.has(id)), "rolled back but in the stream").toEqual([]);
    expect(report.rolledBack.length, "the workload rolled some transactions back").toBeGreaterThan(0);
  }
}
