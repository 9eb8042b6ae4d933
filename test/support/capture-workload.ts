/**
 * What runs against a captured table in table-capture fault tests:
 *
 *   CaptureWorkload  concurrent writers on `accounts (id int primary key,
 *                    v int, note text)`: inserts, updates (some of many rows
 *                    in one statement), key changes and deletes, some
 *                    transactions also appending events to the capture's
 *                    stream under a row's key, a share rolled back. Each
 *                    transaction writes what it did into `capture_ledger` (a
 *                    table nobody captures), so the ledger holds exactly the
 *                    committed changes: the database's word, like test_ledger
 *                    for appends (processes.ts).
 *   expectChangesMatchLedger  the capture's stream is the ledger, event for
 *                    event and per key in commit order (invariants 1-3, 14).
 *
 * Per-key commit order: a transaction first bumps `capture_clock` of each key
 * it will touch, in key order (so writers never deadlock). The row lock holds
 * off every other transaction on that key until this one ends, so the clock
 * values of a key's committed transactions are their commit order.
 */
import pg from "pg";
import type { Sql } from "postgres";
import { expect } from "vitest";
import { partitionFor } from "@tributary/client";
import { assertDense, readAll, type StoredEvent } from "./streams.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const CAPTURED_TABLE = "accounts";
export const CAPTURE_STREAM = "public.accounts";

export interface Envelope {
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  op: "c" | "u" | "d" | "r" | "t";
  source: { table: string; lsn: number; txId: number; snapshot: string };
}

export const envelope = (e: StoredEvent): Envelope => e.data as Envelope;
const isChange = (e: StoredEvent): boolean => e.type.startsWith("row.") || e.type === "table.truncated";

/** The row `accounts` starts with for ids 1..initialRows (what a snapshot reads of an untouched row). */
export const initialRow = (id: number) => ({ id, v: 0, note: `row ${id}` });

/**
 * Creates `accounts` with rows 1..initialRows (initialRow), the clock and the
 * ledger. Not captured yet: the caller captures it, then starts the writers.
 */
export async function prepareCapturedTable(sql: Sql, options: { initialRows: number; keys: readonly number[] }): Promise<void> {
  await sql`create table accounts (id int primary key, v int not null, note text not null)`;
  await sql`insert into accounts select g, 0, 'row ' || g from generate_series(1, ${options.initialRows}::int) g`;
  await sql`create table capture_clock (id int primary key, n bigint not null default 0)`;
  await sql`insert into capture_clock (id) select unnest(${options.keys as number[]}::int[])`;
  // kind: c, u, d (a row change; v is the new value, null for d) or a (an appended event, its id).
  await sql`create table capture_ledger (xid bigint not null, key text not null, clock bigint not null, ord int not null, kind text not null, v int, event_id uuid)`;
}

export interface CaptureWorkloadOptions {
  readonly writers: number;
  /** The ids the writers touch (each must have a capture_clock row). */
  readonly keys: readonly number[];
  /** Every n-th transaction of a writer rolls back at its end. */
  readonly rollbackEvery: number;
  /** Every n-th transaction updates `bulkKeys` rows in one statement (cut into several relay batches when the relay's batches are small). */
  readonly bulkEvery: number;
  readonly bulkKeys: number;
  readonly pauseMs: number;
  /**
   * An id to write near: when it returns one, half the transactions take
   * their keys from the ids just above it (a test points it at a snapshot's
   * cursor, so changes land inside the next chunk's window).
   */
  readonly focus?: () => number | undefined;
}

export interface CaptureWorkloadReport {
  /** Transactions whose COMMIT returned (each changed at least one row). */
  readonly committed: number;
  /** The xids (32 bits, as change events' source.txId) of transactions rolled back on purpose. */
  readonly rolledBackXids: ReadonlySet<number>;
  /** Ids of events appended in transactions rolled back on purpose. */
  readonly rolledBackEventIds: readonly string[];
  /** Committed row changes, and of them the key changes (a delete and a create in the stream). */
  readonly rowChanges: number;
  readonly keyChanges: number;
}

interface LedgerEntry {
  key: number;
  clock: number;
  ord: number;
  kind: "c" | "u" | "d" | "a";
  v: number | null;
  eventId: string | null;
}

/**
 * Writers on node-postgres connections (as AppendWorkload: postgres.js 3.4.9
 * and a dead connection inside a transaction do not mix). Any error of a
 * writer stops the workload and fails stop(): nothing here restarts the
 * database, so a writer has no reason to fail.
 */
export class CaptureWorkload {
  private stopping = false;
  private readonly loops: Promise<void>[] = [];
  private committed = 0;
  private rowChanges = 0;
  private keyChanges = 0;
  private readonly rolledBackXids = new Set<number>();
  private readonly rolledBackEventIds: string[] = [];
  private failure: unknown = null;

  private constructor(private readonly databaseUrl: string, private readonly options: CaptureWorkloadOptions) {}

  static start(databaseUrl: string, options: CaptureWorkloadOptions): CaptureWorkload {
    const workload = new CaptureWorkload(databaseUrl, options);
    for (let w = 0; w < options.writers; w++) workload.loops.push(workload.writer(w));
    return workload;
  }

  /** Committed transactions so far. */
  get commits(): number {
    return this.committed;
  }

  async stop(): Promise<CaptureWorkloadReport> {
    this.stopping = true;
    await Promise.all(this.loops);
    if (this.failure) throw this.failure;
    return { committed: this.committed, rolledBackXids: this.rolledBackXids, rolledBackEventIds: this.rolledBackEventIds, rowChanges: this.rowChanges, keyChanges: this.keyChanges };
  }

  private async writer(w: number): Promise<void> {
    const client = new pg.Client({ connectionString: this.databaseUrl, application_name: "test-capture-writer" });
    try {
      await client.connect();
      // A per-writer generator, so runs differ but each writer's choices are its own.
      let seed = (Date.now() ^ (w * 0x9e3779b9)) >>> 0;
      const random = () => {
        seed = (seed * 1664525 + 1013904223) >>> 0;
        return seed / 2 ** 32;
      };
      for (let t = 0; !this.stopping; t++) {
        await this.transaction(client, w, t, random);
        if (this.options.pauseMs > 0) await sleep(this.options.pauseMs);
      }
    } catch (error) {
      this.failure ??= error;
      this.stopping = true;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** The keys in (id, id + 300], or all of them when none is. */
  private keysAbove(id: number): readonly number[] {
    const near = this.options.keys.filter((k) => k > id && k <= id + 300);
    return near.length > 0 ? near : this.options.keys;
  }

  private async transaction(client: pg.Client, w: number, t: number, random: () => number): Promise<void> {
    const { rollbackEvery, bulkEvery, bulkKeys } = this.options;
    const bulk = bulkEvery > 0 && t % bulkEvery === bulkEvery - 1;
    const rollback = rollbackEvery > 0 && t % rollbackEvery === rollbackEvery - 1;
    const near = this.options.focus?.();
    const keys = near !== undefined && random() < 0.5 ? this.keysAbove(near) : this.options.keys;
    const count = bulk ? bulkKeys : 1 + Math.floor(random() * 4);
    const picked = new Set<number>();
    const start = Math.floor(random() * keys.length);
    // A bulk transaction takes a run of neighbouring keys, the others keys from anywhere.
    for (let i = 0; picked.size < Math.min(count, keys.length); i++) picked.add(keys[bulk ? (start + i) % keys.length : Math.floor(random() * keys.length)]!);
    const locked = [...picked].sort((a, b) => a - b);

    await client.query("begin");
    try {
      const clocks = new Map<number, number>();
      for (const key of locked) {
        const { rows } = await client.query<{ n: string }>("update capture_clock set n = n + 1 where id = $1 returning n", [key]);
        clocks.set(key, Number(rows[0]!.n));
      }
      const { rows: present } = await client.query<{ id: number; v: number }>("select id, v from accounts where id = any($1::int[])", [locked]);
      const exists = new Set(present.map((r) => r.id));
      const ledger: LedgerEntry[] = [];
      let keyChanges = 0;
      let ord = 0;
      const record = (key: number, kind: LedgerEntry["kind"], v: number | null, eventId: string | null = null) =>
        ledger.push({ key, clock: clocks.get(key)!, ord: ord++, kind, v, eventId });
      const note = `w${w}t${t}`;

      if (bulk) {
        const { rows } = await client.query<{ id: number; v: number }>("update accounts set v = v + 1 where id = any($1::int[]) returning id, v", [locked]);
        for (const row of rows) record(row.id, "u", row.v);
        const missing = locked.filter((k) => !exists.has(k));
        await client.query("insert into accounts select k, 0, $2 from unnest($1::int[]) k", [missing, note]);
        for (const key of missing) record(key, "c", 0);
      } else {
        for (const key of locked) {
          const v = Math.floor(random() * 1_000_000);
          const r = random();
          if (!exists.has(key)) {
            await client.query("insert into accounts values ($1, $2, $3)", [key, v, note]);
            exists.add(key);
            record(key, "c", v);
          } else if (r < 0.45) {
            await client.query("update accounts set v = $2, note = $3 where id = $1", [key, v, note]);
            record(key, "u", v);
          } else if (r < 0.65) {
            await client.query("delete from accounts where id = $1", [key]);
            exists.delete(key);
            record(key, "d", null);
          } else {
            const target = locked.find((k) => !exists.has(k));
            if (target === undefined) {
              await client.query("update accounts set v = $2 where id = $1", [key, v]);
              record(key, "u", v);
            } else {
              // A key change: Debezium's delete of the old key, then a create of the new one.
              const { rows } = await client.query<{ v: number }>("update accounts set id = $2 where id = $1 returning v", [key, target]);
              exists.delete(key);
              exists.add(target);
              record(key, "d", null);
              record(target, "c", rows[0]!.v);
              keyChanges++;
            }
          }
          if (random() < 0.3) {
            const { rows } = await client.query<{ id: string }>("select tributary.append($1, $2, 'note.added', $3::jsonb)::text as id",
              [CAPTURE_STREAM, String(key), JSON.stringify({ w, t })]);
            record(key, "a", null, rows[0]!.id);
          }
        }
      }
      const { rows: xids } = await client.query<{ xid: string }>("select (txid_current() % 4294967296)::text as xid");
      const xid = Number(xids[0]!.xid);
      await client.query(
        "insert into capture_ledger (xid, key, clock, ord, kind, v, event_id) select $1, * from unnest($2::text[], $3::bigint[], $4::int[], $5::text[], $6::int[], $7::uuid[])",
        [xid, ledger.map((l) => String(l.key)), ledger.map((l) => l.clock), ledger.map((l) => l.ord), ledger.map((l) => l.kind), ledger.map((l) => l.v),
          ledger.map((l) => l.eventId)],
      );
      if (rollback) {
        await client.query("rollback");
        this.rolledBackXids.add(xid);
        this.rolledBackEventIds.push(...ledger.filter((l) => l.eventId !== null).map((l) => l.eventId!));
      } else {
        await client.query("commit");
        this.committed++;
        this.rowChanges += ledger.filter((l) => l.kind !== "a").length;
        this.keyChanges += keyChanges;
      }
    } catch (error) {
      await client.query("rollback").catch(() => undefined);
      throw error;
    }
  }
}

/** A row of `accounts` (or an event's after) as one comparable text, whatever its keys' order (jsonb sorts them). */
const rowText = (row: Record<string, unknown> | null | undefined): string =>
  row ? `${Object.keys(row).length} ${row.id} ${row.v} ${JSON.stringify(row.note)}` : "none";

/** An event as the ledger would write it: op, new value and transaction of a change; the id of an appended event. */
function eventText(e: StoredEvent): string {
  if (!isChange(e)) return `a:${e.id}`;
  const { op, after, source } = envelope(e);
  return `${op}:${after?.v ?? ""}:${source.txId}`;
}

/**
 * The capture's stream equals the ledger: no duplicate ids, dense offsets
 * (invariant 2), each key in its murmur2 partition, and per key exactly the
 * committed changes and appended events in commit order (1, 3, 14); nothing
 * of a rolled-back transaction; nothing set aside. Snapshot reads ('r') are
 * not in the ledger: per key there is at most one, and it shows the row as
 * the changes before it in the stream left it (its read is current where it
 * stands, chunks.ts). Replaying each key gives the table.
 */
export async function expectChangesMatchLedger(sql: Sql, report: CaptureWorkloadReport, options: { initialRows: number }): Promise<StoredEvent[]> {
  const events = await readAll(sql, CAPTURE_STREAM);
  const ids = new Set(events.map((e) => e.id));
  expect(events.length - ids.size, "events with the same id").toBe(0);
  assertDense(events);
  const [stream] = await sql<{ partitions: number }[]>`select partitions from tributary.streams where name = ${CAPTURE_STREAM}`;
  const misplaced = events.filter((e) => e.partition !== partitionFor(e.key, stream!.partitions));
  expect(misplaced.map((e) => e.key), "keys outside their murmur2 partition").toEqual([]);
  const [rejected] = await sql<{ n: string }[]>`select count(*)::text as n from tributary.rejected_messages`;
  expect(Number(rejected!.n), "set-aside messages").toBe(0);

  const ledger = await sql<{ xid: string; key: string; kind: string; v: number | null; event_id: string | null }[]>`
    select xid::text, key, kind, v, event_id::text from capture_ledger order by key, clock, ord`;
  const expected = new Map<string, string[]>();
  for (const l of ledger) {
    const text = l.kind === "a" ? `a:${l.event_id}` : `${l.kind}:${l.v ?? ""}:${l.xid}`;
    const list = expected.get(l.key);
    if (list) list.push(text);
    else expected.set(l.key, [text]);
  }
  const actual = new Map<string, string[]>();
  for (const e of events) {
    if (isChange(e) && envelope(e).op === "r") continue;
    const list = actual.get(e.key);
    if (list) list.push(eventText(e));
    else actual.set(e.key, [eventText(e)]);
  }
  const keys = new Set([...expected.keys(), ...actual.keys()]);
  const differing = [...keys].filter((k) => (expected.get(k) ?? []).join(" ") !== (actual.get(k) ?? []).join(" "));
  const first = differing[0];
  expect(differing.length, first === undefined ? "" : `key ${first}: ledger ${JSON.stringify(expected.get(first))}, stream ${JSON.stringify(actual.get(first))}`).toBe(0);
  expect(events.filter((e) => !isChange(e) || envelope(e).op !== "r").length, "events besides snapshot reads = ledger rows").toBe(ledger.length);

  // The writers' own view: every COMMIT that returned is in the ledger, no rolled-back transaction is in the stream.
  expect(new Set(ledger.map((l) => l.xid)).size, "committed transactions").toBe(report.committed);
  expect(ledger.filter((l) => l.kind !== "a").length, "committed row changes").toBe(report.rowChanges);
  expect(events.filter((e) => isChange(e) && report.rolledBackXids.has(envelope(e).source.txId)).map((e) => e.id), "changes of rolled-back transactions").toEqual([]);
  expect(report.rolledBackEventIds.filter((id) => ids.has(id)), "appended events of rolled-back transactions").toEqual([]);
  expect(report.rolledBackXids.size, "the workload rolled some transactions back").toBeGreaterThan(0);

  // Replay per key, from the rows the table had when it was captured.
  const rows = new Map<string, Record<string, unknown>>();
  for (let id = 1; id <= options.initialRows; id++) rows.set(String(id), initialRow(id));
  const reads = new Map<string, number>();
  for (const e of events) {
    if (!isChange(e)) continue;
    const { op, before, after } = envelope(e);
    const row = rows.get(e.key);
    if (op === "r") {
      reads.set(e.key, (reads.get(e.key) ?? 0) + 1);
      if (rowText(row) !== rowText(after)) expect(after, `the snapshot read of key ${e.key} (offset ${e.offset}) is not the row as the stream had it`).toEqual(row);
    } else if (op === "c") {
      if (row !== undefined) throw new Error(`key ${e.key}: a create at offset ${e.offset} while the stream holds its row`);
      rows.set(e.key, after!);
    } else {
      if (row === undefined) throw new Error(`key ${e.key}: ${op} at offset ${e.offset} of a row the stream does not hold`);
      expect(before, `the old key of ${op} at offset ${e.offset}`).toEqual({ id: Number(e.key) });
      if (op === "u") rows.set(e.key, after!);
      else rows.delete(e.key);
    }
  }
  expect([...reads].filter(([, n]) => n > 1), "keys read twice by the snapshot").toEqual([]);
  const table = await sql<{ id: number; v: number; note: string }[]>`select id, v, note from accounts order by id`;
  expect(rows.size, "rows the stream replays to").toBe(table.length);
  for (const row of table) {
    const replayed = rows.get(String(row.id));
    if (rowText(replayed) !== rowText(row)) expect(replayed, `key ${row.id}`).toEqual({ ...row });
  }
  return events;
}
