/**
 * tributary.capture(), uncapture() and backfill() refuse bad input with a
 * message that says what is wrong and how to fix it (SQLSTATE 22023,
 * constraint tributary_capture), and change nothing when they refuse. Pure
 * SQL: one backend is enough.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";

describe("table capture: the SQL API's answers", () => {
  const backend = backends()[0]!;
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase(backend);
    await db.sql.unsafe(`
      create table orders (id bigint primary key, note text, amount numeric);
      create table nokey (a int);
      create table nothing (id int primary key); alter table nothing replica identity nothing;
      create table by_index (a int not null, b text not null, c int);
      create unique index by_index_ab on by_index (a, b); alter table by_index replica identity using index by_index_ab;
      create table "Odd Name" (id int primary key);
      create table parted (id int, day date, primary key (id, day)) partition by range (day);
      create table parted_1 partition of parted for values from ('2026-01-01') to ('2027-01-01');
      create view orders_view as select * from orders;
      create materialized view orders_mv as select * from orders;`);
  });
  afterAll(async () => {
    await db.drop();
  });

  /** The error `sql` raises: message, hint and constraint. */
  const refusal = async (sql: string) => {
    const error = await db.sql.unsafe(sql).then(() => null, (e: { message: string; hint?: string; code: string; constraint_name?: string }) => e);
    if (!error) throw new Error(`${sql} did not fail`);
    return { message: error.message, hint: error.hint ?? "", code: error.code, constraint: error.constraint_name };
  };
  const captures = async () => (await db.sql<{ table: string }[]>`select "table" from tributary.captures where state <> 'stopped' order by 1`).map((r) => r.table);

  it("refuses a table it cannot capture, saying why and what to do", async () => {
    expect(await refusal(`select tributary.capture('no_such_table')`)).toMatchObject({ code: "42P01", message: expect.stringMatching(/relation "no_such_table" does not exist/) });
    expect(await refusal(`select tributary.capture('nokey')`)).toMatchObject({
      code: "22023", constraint: "tributary_capture",
      message: expect.stringMatching(/no primary key and no replica identity index/),
      hint: expect.stringMatching(/ADD PRIMARY KEY .* REPLICA IDENTITY USING INDEX/),
    });
    expect(await refusal(`select tributary.capture('nothing')`)).toMatchObject({ message: expect.stringMatching(/REPLICA IDENTITY NOTHING/), hint: expect.stringMatching(/REPLICA IDENTITY DEFAULT/) });
    expect(await refusal(`select tributary.capture('orders_view')`)).toMatchObject({ message: expect.stringMatching(/is a view, not a table/) });
    expect(await refusal(`select tributary.capture('orders_mv')`)).toMatchObject({ message: expect.stringMatching(/is a materialized view, not a table/) });
    expect(await refusal(`select tributary.capture('tributary.events')`)).toMatchObject({ message: expect.stringMatching(/Tributary's own tables cannot be captured/) });
    expect(await refusal(`select tributary.capture('tributary.streams')`)).toMatchObject({ message: expect.stringMatching(/Tributary's own tables cannot be captured/) });
    expect(await refusal(`select tributary.capture('parted_1')`)).toMatchObject({ message: expect.stringMatching(/is a partition of parted: capture the partitioned table/) });
    expect(await refusal(`select tributary.capture('"Odd Name"')`)).toMatchObject({
      message: expect.stringMatching(/the stream name 'public.Odd Name' is invalid/), hint: expect.stringMatching(/pass one in the options/),
    });
    expect(await refusal(`select tributary.capture('orders', '{"stream": "bad name!"}')`)).toMatchObject({ message: expect.stringMatching(/the stream name 'bad name!' is invalid/) });
    expect(await refusal(`select tributary.capture('orders', '{"snapshot": "later"}')`)).toMatchObject({ message: expect.stringMatching(/option snapshot must be "initial" .* or "none"/) });
    expect(await refusal(`select tributary.capture('orders', '{"columns": ["note", "nope"]}')`)).toMatchObject({ message: expect.stringMatching(/orders has no column nope/) });
    expect(await refusal(`select tributary.capture('orders', '{"partitions": "eight"}')`)).toMatchObject({ message: expect.stringMatching(/option partitions must be a whole number/) });
    expect(await refusal(`select tributary.capture('orders', '{"colums": ["note"]}')`)).toMatchObject({ message: expect.stringMatching(/unknown option 'colums'/), hint: expect.stringMatching(/stream, partitions, snapshot and columns/) });
    expect(await refusal(`select tributary.capture('orders', '[]')`)).toMatchObject({ message: expect.stringMatching(/options must be a JSON object/) });
    // Nothing was captured, no stream created, nothing added to the relay's publication.
    expect(await captures()).toEqual([]);
    expect(await db.sql`select name from tributary.streams`).toEqual([]);
    expect(await db.sql`select 1 from pg_publication_tables where pubname = 'tributary_relay'`).toEqual([]);
  });

  it("captures into the default or a named stream, by primary key or replica identity index; the same call again is a no-op, other options an error", async () => {
    expect(await db.sql`select tributary.capture('orders') as stream`).toEqual([{ stream: "public.orders" }]);
    expect(await db.sql`select tributary.capture('orders') as stream`).toEqual([{ stream: "public.orders" }]);
    expect(await refusal(`select tributary.capture('orders', '{"partitions": 3}')`)).toMatchObject({ message: expect.stringMatching(/already exists with 8 partitions, not 3/) });
    expect(await refusal(`select tributary.capture('orders', '{"snapshot": "none"}')`)).toMatchObject({
      message: expect.stringMatching(/already captured into stream public.orders with other options/), hint: expect.stringMatching(/uncapture\('orders'\)/),
    });
    expect(await db.sql`select tributary.capture('by_index', '{"stream": "idx", "columns": ["c"], "partitions": 3, "snapshot": "none"}') as stream`).toEqual([{ stream: "idx" }]);
    const rows = await db.sql`select "table", stream, key_columns, columns, state from tributary.captures order by 1`;
    expect(rows).toEqual([
      { table: "public.by_index", stream: "idx", key_columns: ["a", "b"], columns: ["a", "b", "c"], state: "streaming" },
      { table: "public.orders", stream: "public.orders", key_columns: ["id"], columns: null, state: "snapshotting" },
    ]);
    expect(await db.sql`select name, partitions from tributary.streams order by 1`).toEqual([{ name: "idx", partitions: 3 }, { name: "public.orders", partitions: 8 }]);
    expect((await db.sql`select tablename from pg_publication_tables where pubname = 'tributary_relay' order by 1`).map((r) => r.tablename)).toEqual(["by_index", "orders"]);
    // An existing stream keeps its partition count: another is refused.
    expect(await refusal(`select tributary.capture('parted', '{"stream": "idx", "partitions": 4}')`)).toMatchObject({ message: expect.stringMatching(/already exists with 3 partitions, not 4/) });
  });

  it("backfill needs a captured table and a valid condition; uncapture stops a capture and is false for a table not captured", async () => {
    expect(await refusal(`select tributary.backfill('nokey')`)).toMatchObject({ message: expect.stringMatching(/nokey is not captured/), hint: expect.stringMatching(/tributary.capture\('nokey'\)/) });
    expect(await refusal(`select tributary.backfill('orders', 'no_column > 1')`)).toMatchObject({ message: expect.stringMatching(/is not a valid WHERE condition on orders: column "no_column" does not exist/) });
    // The relay evaluates a filter with its own rights: a function a user defined may not appear in it.
    await db.sql`create function leak(numeric) returns boolean language sql as $$ select true $$`;
    expect(await refusal(`select tributary.backfill('orders', 'leak(amount) and amount > 0')`)).toMatchObject({
      message: expect.stringMatching(/the filter calls leak\(numeric\), which PostgreSQL does not provide/),
    });
    await db.sql`select tributary.backfill('orders', 'amount > 10')`;
    expect(await db.sql`select state, snapshot_filter, snapshot_state, rows_estimated from tributary.captures where "table" = 'public.orders'`)
      .toEqual([{ state: "snapshotting", snapshot_filter: "amount > 10", snapshot_state: "pending", rows_estimated: null }]);
    expect(await db.sql`select tributary.uncapture('orders') as stopped`).toEqual([{ stopped: true }]);
    expect(await db.sql`select tributary.uncapture('orders') as stopped`).toEqual([{ stopped: false }]);
    expect(await db.sql`select state, stop_reason from tributary.captures where "table" = 'public.orders'`).toEqual([{ state: "stopped", stop_reason: "uncaptured" }]);
    expect((await db.sql`select tablename from pg_publication_tables where pubname = 'tributary_relay'`).map((r) => r.tablename)).toEqual(["by_index"]);
    // Captured again: a new capture, with new options.
    await db.sql`select tributary.capture('orders', '{"snapshot": "none"}')`;
    expect(await db.sql`select state from tributary.captures where "table" = 'public.orders'`).toEqual([{ state: "streaming" }]);
  });
});
