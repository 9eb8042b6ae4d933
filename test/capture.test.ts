/**
 * Table capture (issue 12), the contract on every backend — PostgreSQL 18 and
 * 15 with pgoutput, 15 with wal2json — with the same expected events on each,
 * so both decoders produce identical events (invariant 14): row changes of a
 * captured table become Debezium-shaped change events, exactly once, in
 * commit order, interleaved with appended events in WAL order; rolled-back
 * changes never appear; snapshots under concurrent writes leave every key's
 * last event equal to its row.
 */
import { afterEach, beforeEach, expect, it } from "vitest";
import { append } from "@tributary/client";
import { startRelay, type RelayHandle } from "@tributary/relay";
import { createTestDatabase, describeBackends, type TestDatabase } from "./support/backends.ts";
import { eventually } from "./support/processes.ts";
import { assertDense, readAll, type StoredEvent } from "./support/streams.ts";

class Rollback extends Error {}

interface Envelope {
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  op: string;
  source: { connector: string; db: string; schema: string; table: string; lsn: number; txId: number; ts_ms: number; snapshot: string };
  ts_ms: number;
}

const envelope = (e: StoredEvent) => e.data as Envelope;

/** Each key's last event replayed: the rows the stream says the table holds. */
function replay(events: StoredEvent[]): Map<string, Record<string, unknown>> {
  const rows = new Map<string, Record<string, unknown>>();
  for (const e of events) {
    const { op, after } = envelope(e);
    if (op === "d") rows.delete(e.key);
    else if (op === "t") rows.clear();
    else rows.set(e.key, after!);
  }
  return rows;
}

describeBackends("table capture", (backend) => {
  let db: TestDatabase;
  let relay: RelayHandle | null = null;
  const log: string[] = [];

  const start = (options: { snapshotChunkRows?: number } = {}) => {
    relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: (m) => log.push(m), snapshotPollMs: 100, ...options });
  };
  const captureState = async (table: string) =>
    (await db.sql<{ state: string; stop_reason: string | null; rows_done: string }[]>`select state, stop_reason, rows_done::text from tributary.captures where "table" = ${table}`)[0];
  /** Waits until the stream holds `count` events and the relay has passed every commit so far. */
  const settled = async (stream: string, count: number) => {
    await eventually(`${count} events in ${stream}`, async () => (await readAll(db.sql, stream)).length >= count, 60_000).catch((e: Error) => { throw new Error(`${e.message}\n${log.join("\n")}`); });
    const events = await readAll(db.sql, stream);
    expect(events.length, JSON.stringify(events.map((e) => [e.type, e.key]))).toBe(count);
    return events;
  };

  beforeEach(async () => {
    db = await createTestDatabase(backend);
    log.length = 0;
  });
  afterEach(async () => {
    await relay?.stop();
    relay = null;
    await db.drop();
  });

  it("streams inserts, updates and deletes as change events in commit order, never a rolled-back one", async () => {
    await db.sql`create type status as enum ('new', 'paid')`;
    await db.sql`create table orders (id int primary key, note text, amount numeric(12, 2), tags text[], meta jsonb, placed_at timestamptz, ok boolean,
                                      ref uuid, raw bytea, day date, status status, big int8, ratio float8, span interval)`;
    await db.sql`select tributary.capture('orders', '{"snapshot": "none", "partitions": 1}')`;
    start();
    await db.sql`insert into orders values (1, 'first', 10.50, '{a,b}', '{"x": [1, 2]}', '2026-01-02 03:04:05.678+02', true,
                                            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\xdeadbeef', '2026-03-04', 'paid', 9007199254740993, 0.1, '1 day 02:03:04')`;
    await db.sql`update orders set note = 'changed', amount = 11 where id = 1`;
    await db.sql.begin(async (tx) => {
      await tx`insert into orders (id, note) values (2, 'second')`;
      await append(tx, { stream: "public.orders", key: "manual", type: "note.added", data: { n: 1 } });
      await tx`delete from orders where id = 1`;
    });
    await db.sql.begin(async (tx) => {
      await tx`insert into orders (id, note) values (3, 'rolled back')`;
      throw new Rollback();
    }).catch((e: unknown) => { if (!(e instanceof Rollback)) throw e; });
    await db.sql`update orders set id = 20 where id = 2`;
    const events = await settled("public.orders", 7);
    assertDense(events);
    expect(events.map((e) => [e.type, e.key])).toEqual([
      ["row.inserted", "1"],
      ["row.updated", "1"],
      ["row.inserted", "2"],
      ["note.added", "manual"],
      ["row.deleted", "1"],
      ["row.deleted", "2"],
      ["row.inserted", "20"],
    ]);
    const [insert, update, , , del] = events.map(envelope);
    // The same values from both decoders: integers as numbers (int8 with every digit), numeric as exact strings,
    // json as JSON, arrays as arrays, timestamptz in UTC, bytea as base64, enums and uuids as strings.
    expect(insert!.after).toEqual({
      id: 1, note: "first", amount: "10.50", tags: ["a", "b"], meta: { x: [1, 2] }, placed_at: "2026-01-02T01:04:05.678Z", ok: true,
      ref: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", raw: "3q2+7w==", day: "2026-03-04", status: "paid", big: expect.any(Number), ratio: 0.1, span: "P1DT2H3M4S",
    });
    // jsonb keeps the int8's digits (a JS number would not).
    expect(await db.sql`select data->'after'->>'big' as big, jsonb_typeof(data->'after'->'big') as type from tributary.events where id = ${events[0]!.id}::uuid`)
      .toEqual([{ big: "9007199254740993", type: "number" }]);
    expect(insert).toMatchObject({
      before: null,
      op: "c",
      source: { connector: "tributary", schema: "public", table: "orders", snapshot: "false" },
    });
    expect(update).toMatchObject({ before: { id: 1 }, after: { id: 1, note: "changed", amount: "11.00" }, op: "u" });
    expect(del).toMatchObject({ before: { id: 1 }, after: null, op: "d" });
    // source.lsn and txId are the change's own; ts_ms its commit time.
    expect(insert!.source.lsn).toBeGreaterThan(0);
    expect(insert!.source.txId).toBeGreaterThan(0);
    expect(Math.abs(insert!.source.ts_ms - events[0]!.committed_at.getTime())).toBeLessThan(2);
    // Ids are deterministic (v8) and unique.
    expect(new Set(events.map((e) => e.id)).size).toBe(7);
    const [row] = await db.sql<{ state: string; last_change_at: Date | null }[]>`select state, last_change_at from tributary.captures where "table" = 'public.orders'`;
    expect(row).toMatchObject({ state: "streaming" });
    expect(row!.last_change_at).not.toBeNull();
  });

  it("snapshots the existing rows under concurrent writes: each key's last event is its row", async () => {
    await db.sql`create table items (id int primary key, v int not null, label text)`;
    await db.sql`insert into items select g, 0, 'row ' || g from generate_series(1, 3000) g`;
    start({ snapshotChunkRows: 250 });
    await db.sql`select tributary.capture('items', '{"partitions": 4}')`;
    let writing = true;
    const writer = (async () => {
      let n = 0;
      while (writing) {
        n++;
        const id = 1 + ((n * 7919) % 3500);
        await db.sql.begin(async (tx) => {
          await tx`insert into items values (${id}, ${n}, 'w') on conflict (id) do update set v = excluded.v`;
          if (n % 5 === 0) await tx`delete from items where id = ${1 + ((n * 31) % 3000)}`;
          if (n % 11 === 0) throw new Rollback();
        }).catch((e: unknown) => { if (!(e instanceof Rollback)) throw e; });
      }
      return n;
    })();
    await eventually("the snapshot to end", async () => (await captureState("public.items"))?.state === "streaming", 120_000)
      .catch((e: Error) => { throw new Error(`${e.message}\n${log.join("\n")}`); })
      .finally(() => (writing = false));
    writing = false;
    await writer;
    await db.sql`select tributary.append('marker', 'm', 'm', '{}')`;
    await eventually("the relay to catch up", async () => (await readAll(db.sql, "marker")).length === 1, 60_000);
    const events = await readAll(db.sql, "public.items");
    assertDense(events);
    expect(events.some((e) => envelope(e).op === "r")).toBe(true);
    expect(events.filter((e) => envelope(e).op === "r").every((e) => e.type === "row.read" && envelope(e).source.snapshot === "true")).toBe(true);
    const table = await db.sql<{ id: number; v: number; label: string }[]>`select id, v, label from items order by id`;
    const replayed = replay(events);
    expect(replayed.size).toBe(table.length);
    for (const row of table) expect(replayed.get(String(row.id))).toEqual(row);
    const state = await captureState("public.items");
    expect(Number(state!.rows_done)).toBeGreaterThan(0);
  });

  it("carries the old row under REPLICA IDENTITY FULL, and an unchanged TOASTed value as Debezium's placeholder, never null", async () => {
    await db.sql`create table docs (id int primary key, title text, body text)`;
    // Stored out of line, uncompressed: an update that does not touch it leaves an unchanged TOAST pointer.
    await db.sql`alter table docs alter column body set storage external`;
    await db.sql`create table full_docs (id int primary key, title text)`;
    await db.sql`alter table full_docs replica identity full`;
    await db.sql`select tributary.capture('docs', '{"snapshot": "none", "partitions": 1}')`;
    await db.sql`select tributary.capture('full_docs', '{"snapshot": "none", "partitions": 1, "stream": "full"}')`;
    start();
    const body = "x".repeat(40_000);
    await db.sql`insert into docs values (1, 'a', ${body})`;
    await db.sql`update docs set title = 'b' where id = 1`;
    await db.sql`insert into full_docs values (1, 'a')`;
    await db.sql`update full_docs set title = 'b' where id = 1`;
    await db.sql`delete from full_docs where id = 1`;
    const docs = (await settled("public.docs", 2)).map(envelope);
    expect((docs[0]!.after as { body: string }).body === body, "the inserted body, whole").toBe(true);
    expect({ ...docs[1], after: { ...docs[1]!.after, body: String(docs[1]!.after!.body).slice(0, 40) } }).toMatchObject({ op: "u", before: { id: 1 }, after: { id: 1, title: "b", body: "__debezium_unavailable_value" } });
    const full = (await settled("full", 3)).map(envelope);
    expect(full[1]).toMatchObject({ op: "u", before: { id: 1, title: "a" }, after: { id: 1, title: "b" } });
    expect(full[2]).toMatchObject({ op: "d", before: { id: 1, title: "b" }, after: null });
  });

  it("follows schema changes without a restart: added, dropped, renamed and retyped columns, new types", async () => {
    await db.sql`create table shapes (id int primary key, a text, b int)`;
    await db.sql`select tributary.capture('shapes', '{"snapshot": "none", "partitions": 1}')`;
    start();
    await db.sql`insert into shapes values (1, 'x', 1)`;
    await settled("public.shapes", 1);
    await db.sql`alter table shapes add column c jsonb`;
    await db.sql`insert into shapes values (2, 'y', 2, '{"k": true}')`;
    await db.sql`alter table shapes drop column a`;
    await db.sql`insert into shapes values (3, 3, '[1]')`;
    await db.sql`alter table shapes rename column b to bee`;
    await db.sql`insert into shapes values (4, 4, null)`;
    await db.sql`alter table shapes alter column bee type numeric(6, 1)`;
    await db.sql`create type mood as enum ('happy', 'sad')`;
    await db.sql`alter table shapes add column m mood`;
    await db.sql`insert into shapes values (5, 5.5, null, 'sad')`;
    await db.sql`update shapes set m = 'happy' where id = 1`;
    const events = (await settled("public.shapes", 6)).map(envelope);
    expect(events.map((e) => e.after)).toEqual([
      { id: 1, a: "x", b: 1 },
      { id: 2, a: "y", b: 2, c: { k: true } },
      { id: 3, b: 3, c: [1] },
      { id: 4, bee: 4, c: null },
      { id: 5, bee: "5.5", c: null, m: "sad" },
      { id: 1, bee: "1.0", c: null, m: "happy" },
    ]);
    expect(relay).not.toBeNull();
  });

  it("captures a partitioned table as its root, and a partition created while capturing", async () => {
    await db.sql`create table measurements (id int, day date, v int, primary key (id, day)) partition by range (day)`;
    await db.sql`create table measurements_1 partition of measurements for values from ('2026-01-01') to ('2026-02-01')`;
    await db.sql`insert into measurements values (1, '2026-01-05', 1)`;
    start({ snapshotChunkRows: 10 });
    await db.sql`select tributary.capture('measurements', '{"partitions": 1}')`;
    await eventually("the snapshot to end", async () => (await captureState("public.measurements"))?.state === "streaming", 60_000);
    await db.sql`insert into measurements values (2, '2026-01-06', 2)`;
    await db.sql`create table measurements_2 partition of measurements for values from ('2026-02-01') to ('2026-03-01')`;
    await db.sql`insert into measurements values (3, '2026-02-07', 3)`;
    await db.sql`update measurements set day = '2026-02-01' where id = 2`;
    const events = await settled("public.measurements", 5);
    expect(events.map((e) => [envelope(e).op, e.key])).toEqual([
      ["r", '["1","2026-01-05"]'],
      ["c", '["2","2026-01-06"]'],
      ["c", '["3","2026-02-07"]'],
      // The key changed (and the row moved to another partition): a delete of the old key, a create of the new.
      ["d", '["2","2026-01-06"]'],
      ["c", '["2","2026-02-01"]'],
    ]);
    expect(events.every((e) => envelope(e).source.table === "measurements")).toBe(true);
    const replayed = replay(events);
    expect([...replayed.keys()].sort()).toEqual(['["1","2026-01-05"]', '["2","2026-02-01"]', '["3","2026-02-07"]']);
  });

  it("backfills rows matching a filter while streaming goes on; a truncate is a 't' event; uncapture stops the events", async () => {
    await db.sql`create table accounts (id int primary key, region text, balance int)`;
    await db.sql`insert into accounts select g, case when g % 2 = 0 then 'eu' else 'us' end, g from generate_series(1, 40) g`;
    await db.sql`select tributary.capture('accounts', '{"snapshot": "none", "partitions": 2}')`;
    start({ snapshotChunkRows: 7 });
    await db.sql`update accounts set balance = 0 where id = 1`;
    await settled("public.accounts", 1);
    await db.sql`select tributary.backfill('accounts', ${"region = 'eu'"})`;
    await eventually("the backfill to end", async () => (await captureState("public.accounts"))?.state === "streaming", 60_000);
    const reads = (await readAll(db.sql, "public.accounts")).filter((e) => envelope(e).op === "r");
    expect(reads.map((e) => Number(e.key)).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => 2 * (i + 1)));
    expect((await captureState("public.accounts"))!.rows_done).toBe("20");
    await db.sql`truncate accounts`;
    await db.sql`select tributary.uncapture('accounts')`;
    await db.sql`insert into accounts values (100, 'eu', 1)`;
    await db.sql`select tributary.append('marker', 'm', 'm', '{}')`;
    await eventually("the relay to catch up", async () => (await readAll(db.sql, "marker")).length === 1, 60_000);
    const events = await readAll(db.sql, "public.accounts");
    expect(events.length).toBe(22);
    const truncate = events.find((e) => e.type === "table.truncated")!;
    expect(envelope(truncate)).toMatchObject({ op: "t", before: null, after: null, source: { table: "accounts" } });
    expect((await captureState("public.accounts"))).toMatchObject({ state: "stopped", stop_reason: "uncaptured" });
  });

  it("a dropped captured table stops its capture with a clear state; the relay goes on", async () => {
    await db.sql`create table doomed (id int primary key)`;
    await db.sql`select tributary.capture('doomed', '{"snapshot": "none"}')`;
    start();
    await db.sql`insert into doomed values (1)`;
    await settled("public.doomed", 1);
    await db.sql`drop table doomed`;
    await db.sql`select tributary.append('after', 'k', 't', '{}')`;
    await eventually("the relay to go on", async () => (await readAll(db.sql, "after")).length === 1, 60_000);
    expect(await captureState("public.doomed")).toMatchObject({ state: "stopped", stop_reason: "table dropped" });
  });
});
