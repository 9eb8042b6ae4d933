/**
 * The SQL API contract (docs/ARCHITECTURE.md "Public contracts"), as a user in any
 * language meets it:
 *
 * - every bad input is refused with its own rule: SQLSTATE 22023, the rule's
 *   constraint name and a message that states the rule; the TypeScript client
 *   turns each into a TributaryInputError with a stable code;
 * - the limits are inclusive (200-character names, data of exactly the limit);
 * - nothing accepted is lost because of a refused append (invariant 1), and a
 *   SAVEPOINT keeps the good events of the same transaction;
 * - streams get 8 partitions unless created otherwise, and partition =
 *   murmur2(key) mod partitions (invariant 3);
 * - tributary.events is append-only, and reading one partition from an offset
 *   is a primary-key range scan;
 * - events appended after migrate but before any relay ever ran are captured
 *   (invariant 7).
 *
 * Pure validation runs on one backend; whatever involves the relay runs on
 * every backend of the matrix.
 */
import type { ReservedSql, Sql } from "postgres";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { append, appendBatch, createStream, partitionFor, TributaryInputError, type InputErrorCode } from "@tributary/client";
import { startRelay, type RelayHandle } from "@tributary/relay";
import { backends, createTestDatabase, describeBackends, type TestDatabase } from "./support/backends.ts";
import { assertDense, readAll, waitForCount } from "./support/streams.ts";

/** The error a promise rejects with; fails the test when it resolves. */
async function rejection(promise: Promise<unknown>): Promise<{ code?: string; constraint_name?: string; message: string; hint?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as { code?: string; constraint_name?: string; message: string; hint?: string };
  }
  throw new Error("expected a rejection, but the call succeeded");
}

const RULES = {
  streamName: /a stream name is 1 to 200 characters of A-Z a-z 0-9 \. _ -/,
  key: /event key must be a non-empty string/,
  type: /event type must be a non-empty string/,
  data: /event data must not be NULL/,
  dataSize: /over the limit of 100 bytes/,
  headers: /event headers must be a JSON object/,
  partitions: /use 1 to 10000/,
  batchShape: /must have the same length/,
};

/** A JSON string value whose jsonb text (quotes included) is exactly `bytes` bytes of UTF-8. */
function jsonStringOfBytes(bytes: number): string {
  // 'é' is 2 bytes in UTF-8: the limit counts bytes, not characters.
  const body = bytes - 2;
  return "é".repeat(Math.floor(body / 2)) + "x".repeat(body % 2);
}

describe("SQL API input validation", () => {
  const backend = backends()[0]!;
  let db: TestDatabase;
  /** A database whose operator set max_data_bytes to 100. */
  let smallDb: TestDatabase;
  let small: Sql;

  beforeAll(async () => {
    db = await createTestDatabase(backend);
    smallDb = await createTestDatabase(backend);
    small = smallDb.sql;
    await small`select tributary.set_limit('max_data_bytes', 100)`;
  });
  afterAll(async () => {
    await smallDb?.drop();
    await db?.drop();
  });

  const appendSql = (sql: Sql, stream: string | null, key: string | null, type: string | null, data: string | null, headers: string | null = "{}") =>
    // ::text first: a parameter typed jsonb would be JSON-encoded again by postgres.js.
    sql`select tributary.append(${stream}, ${key}, ${type}, ${data}::text::jsonb, ${headers}::text::jsonb) as id`;

  describe("from SQL: SQLSTATE 22023, the rule's constraint name, a message stating the rule", () => {
    const cases: Array<[string, (sql: Sql, small: Sql) => Promise<unknown>, string, RegExp]> = [
      ["empty stream name", (sql) => appendSql(sql, "", "k", "T", "1"), "tributary_stream_name", RULES.streamName],
      ["201-character stream name", (sql) => appendSql(sql, "s".repeat(201), "k", "T", "1"), "tributary_stream_name", RULES.streamName],
      ["stream name with a space", (sql) => appendSql(sql, "my stream", "k", "T", "1"), "tributary_stream_name", RULES.streamName],
      ["stream name with a slash", (sql) => appendSql(sql, "a/b", "k", "T", "1"), "tributary_stream_name", RULES.streamName],
      ["stream name with a non-ASCII letter", (sql) => appendSql(sql, "café", "k", "T", "1"), "tributary_stream_name", RULES.streamName],
      ["stream name ending in a newline", (sql) => appendSql(sql, "orders\n", "k", "T", "1"), "tributary_stream_name", RULES.streamName],
      ["NULL stream name", (sql) => appendSql(sql, null, "k", "T", "1"), "tributary_stream_name", RULES.streamName],
      ["empty key", (sql) => appendSql(sql, "s", "", "T", "1"), "tributary_key", RULES.key],
      ["NULL key", (sql) => appendSql(sql, "s", null, "T", "1"), "tributary_key", RULES.key],
      ["empty type", (sql) => appendSql(sql, "s", "k", "", "1"), "tributary_type", RULES.type],
      ["NULL type", (sql) => appendSql(sql, "s", "k", null, "1"), "tributary_type", RULES.type],
      ["NULL data", (sql) => appendSql(sql, "s", "k", "T", null), "tributary_data", RULES.data],
      ["data 1 byte over the limit", (_sql, small) => appendSql(small, "s", "k", "T", JSON.stringify(jsonStringOfBytes(101))), "tributary_data_size", RULES.dataSize],
      ["headers that are an array", (sql) => appendSql(sql, "s", "k", "T", "1", "[]"), "tributary_headers", RULES.headers],
      ["headers that are a string", (sql) => appendSql(sql, "s", "k", "T", "1", '"h"'), "tributary_headers", RULES.headers],
      ["NULL headers", (sql) => appendSql(sql, "s", "k", "T", "1", null), "tributary_headers", RULES.headers],
      ["create_stream with 0 partitions", (sql) => sql`select tributary.create_stream('zero', 0)`, "tributary_partitions", RULES.partitions],
      ["create_stream with 10001 partitions", (sql) => sql`select tributary.create_stream('many', 10001)`, "tributary_partitions", RULES.partitions],
      ["create_stream with NULL partitions", (sql) => sql`select tributary.create_stream('nullp', null)`, "tributary_partitions", RULES.partitions],
      ["create_stream with a bad name", (sql) => sql`select tributary.create_stream('no spaces', 3)`, "tributary_stream_name", RULES.streamName],
      [
        "append_many with one key too few",
        (sql) => sql`select tributary.append_many(array['s','s'], array['k'], array['T','T'], array['1','2']::jsonb[])`,
        "tributary_batch_shape",
        RULES.batchShape,
      ],
      [
        "append_many with one headers object too many",
        (sql) => sql`select tributary.append_many(array['s'], array['k'], array['T'], array['1']::jsonb[], array['{}','{}']::jsonb[])`,
        "tributary_batch_shape",
        RULES.batchShape,
      ],
      [
        "append_many with a bad event inside",
        (sql) => sql`select tributary.append_many(array['s','s'], array['k',''], array['T','T'], array['1','2']::jsonb[])`,
        "tributary_key",
        RULES.key,
      ],
    ];

    it.each(cases)("refuses %s", async (_name, call, constraint, rule) => {
      const error = await rejection(call(db.sql, small));
      expect(error.code).toBe("22023");
      expect(error.constraint_name).toBe(constraint);
      expect(error.message).toMatch(rule);
    });

    it("refuses a different partition count for an existing stream, and says why", async () => {
      await db.sql`select tributary.create_stream('fixed', 3)`;
      await db.sql`select tributary.create_stream('fixed', 3)`; // same count: idempotent
      const error = await rejection(db.sql`select tributary.create_stream('fixed', 4)`);
      expect(error.code).toBe("22023");
      expect(error.constraint_name).toBe("tributary_partitions");
      expect(error.message).toMatch(/stream fixed already exists with 3 partitions, not 4/);
      expect(error.hint).toMatch(/fixed at creation/);
      const [row] = await db.sql<{ partitions: number }[]>`select partitions from tributary.streams where name = 'fixed'`;
      expect(row!.partitions).toBe(3);
    });

    it("says how to raise the data limit", async () => {
      const error = await rejection(appendSql(small, "s", "k", "T", JSON.stringify(jsonStringOfBytes(101))));
      expect(error.message).toMatch(/event data is 101 bytes, over the limit of 100 bytes \(stream s\)/);
      expect(error.hint).toMatch(/tributary\.set_limit\('max_data_bytes', <bytes>\)/);
    });

    it("refuses a limit out of its range, naming the range", async () => {
      const error = await rejection(small`select tributary.set_limit('max_key_bytes', 5000)`);
      expect(error.constraint_name).toBe("tributary_limit");
      expect(error.message).toMatch(/limit max_key_bytes must be between 1 and 2048/);
      const unknown = await rejection(small`select tributary.set_limit('max_bytes', 5)`);
      expect(unknown.message).toMatch(/unknown limit 'max_bytes': the limits are max_data_bytes, max_depth, max_headers_bytes, max_key_bytes, max_type_bytes/);
    });

    it("accepts the limits themselves: 200-character names, data of exactly the limit, JSON null data", async () => {
      const name200 = "s".repeat(200);
      await db.sql`select tributary.create_stream(${"c".repeat(200)}, 2)`;
      const [a] = await appendSql(db.sql, name200, "k", "T", "1");
      expect(a!.id).toMatch(/^[0-9a-f-]{36}$/);
      const atLimit = JSON.stringify(jsonStringOfBytes(100));
      expect(Buffer.byteLength(atLimit)).toBe(100);
      const [b] = await appendSql(small, "s", "k", "T", atLimit);
      expect(b!.id).toMatch(/^[0-9a-f-]{36}$/);
      const [c] = await appendSql(db.sql, "s", "k", "T", "null");
      expect(c!.id).toMatch(/^[0-9a-f-]{36}$/);
      const [d] = await db.sql`select tributary.create_stream('one', 1), tributary.create_stream('max', 10000)`;
      expect(d).toBeDefined();
    });

    it("applies the 1 MiB default data limit", async () => {
      const atLimit = JSON.stringify("x".repeat(1048576 - 2));
      const [ok] = await appendSql(db.sql, "s", "k", "T", atLimit);
      expect(ok!.id).toMatch(/^[0-9a-f-]{36}$/);
      const error = await rejection(appendSql(db.sql, "s", "k", "T", JSON.stringify("x".repeat(1048576 - 1))));
      expect(error.constraint_name).toBe("tributary_data_size");
      expect(error.message).toMatch(/over the limit of 1048576 bytes/);
    });
  });

  describe("from the TypeScript client: a TributaryInputError with a stable code", () => {
    const event = { stream: "s", key: "k", type: "T", data: { ok: true } };
    const none = null as unknown as string;
    const cases: Array<[string, (sql: Sql, small: Sql) => Promise<unknown>, InputErrorCode, RegExp]> = [
      ["empty stream name", (sql) => append(sql, { ...event, stream: "" }), "INVALID_STREAM_NAME", RULES.streamName],
      ["201-character stream name", (sql) => append(sql, { ...event, stream: "s".repeat(201) }), "INVALID_STREAM_NAME", RULES.streamName],
      ["stream name with bad characters", (sql) => append(sql, { ...event, stream: "orders/eu" }), "INVALID_STREAM_NAME", RULES.streamName],
      ["null stream name", (sql) => append(sql, { ...event, stream: none }), "INVALID_STREAM_NAME", RULES.streamName],
      ["empty key", (sql) => append(sql, { ...event, key: "" }), "INVALID_KEY", RULES.key],
      ["null key", (sql) => append(sql, { ...event, key: none }), "INVALID_KEY", RULES.key],
      ["empty type", (sql) => append(sql, { ...event, type: "" }), "INVALID_TYPE", RULES.type],
      ["null type", (sql) => append(sql, { ...event, type: none }), "INVALID_TYPE", RULES.type],
      ["data over the limit", (_sql, small) => append(small, { ...event, data: jsonStringOfBytes(101) }), "DATA_TOO_LARGE", RULES.dataSize],
      ["headers that are an array", (sql) => append(sql, { ...event, headers: ["h"] as unknown as Record<string, string> }), "INVALID_HEADERS", RULES.headers],
      ["headers that are a string", (sql) => append(sql, { ...event, headers: "h" as unknown as Record<string, string> }), "INVALID_HEADERS", RULES.headers],
      ["a batch with an empty stream name", (sql) => appendBatch(sql, [event, { ...event, stream: "" }]), "INVALID_STREAM_NAME", RULES.streamName],
      ["a batch with an empty key", (sql) => appendBatch(sql, [event, { ...event, key: "" }]), "INVALID_KEY", RULES.key],
      ["a batch with a null type", (sql) => appendBatch(sql, [event, { ...event, type: none }]), "INVALID_TYPE", RULES.type],
      ["a batch with data over the limit", (_sql, small) => appendBatch(small, [event, { ...event, data: jsonStringOfBytes(101) }]), "DATA_TOO_LARGE", RULES.dataSize],
      ["a batch with array headers", (sql) => appendBatch(sql, [{ ...event, headers: [1] as unknown as Record<string, string> }]), "INVALID_HEADERS", RULES.headers],
      ["createStream with 0 partitions", (sql) => createStream(sql, "zero", 0), "INVALID_PARTITIONS", RULES.partitions],
      ["createStream with 10001 partitions", (sql) => createStream(sql, "many", 10001), "INVALID_PARTITIONS", RULES.partitions],
      ["createStream with 2.5 partitions", (sql) => createStream(sql, "half", 2.5), "INVALID_PARTITIONS", /partition/],
      ["createStream with a bad name", (sql) => createStream(sql, "", 3), "INVALID_STREAM_NAME", RULES.streamName],
      ["createStream with another count for an existing stream", async (sql) => {
        await createStream(sql, "fixed-ts", 3);
        await createStream(sql, "fixed-ts", 5);
      }, "INVALID_PARTITIONS", /already exists with 3 partitions, not 5 \(Partition counts are fixed at creation/],
    ];

    it.each(cases)("refuses %s", async (_name, call, code, rule) => {
      const error = await rejection(call(db.sql, small));
      expect(error).toBeInstanceOf(TributaryInputError);
      expect((error as TributaryInputError).code).toBe(code);
      expect(error.message).toMatch(rule);
    });

    it("refuses missing data (undefined) the same way from append and appendBatch", async () => {
      const missing = { stream: "s", key: "k", type: "T", data: undefined };
      const single = await rejection(append(db.sql, missing));
      const batch = await rejection(appendBatch(db.sql, [missing]));
      expect([(single as TributaryInputError).code, (batch as TributaryInputError).code]).toEqual(["INVALID_DATA", "INVALID_DATA"]);
    });

    it("treats data: null as the JSON null in append as in appendBatch", async () => {
      // SQL NULL is refused ("use 'null'::jsonb for a JSON null"); JavaScript's null is JSON's null.
      const nullData = { stream: "s", key: "k", type: "T", data: null };
      const [fromBatch] = await appendBatch(db.sql, [nullData]);
      expect(fromBatch).toMatch(/^[0-9a-f-]{36}$/);
      expect(await append(db.sql, nullData)).toMatch(/^[0-9a-f-]{36}$/);
    });

    it("accepts 200-character stream names and data of exactly the limit", async () => {
      expect(await append(db.sql, { ...event, stream: "t".repeat(200) })).toMatch(/^[0-9a-f-]{36}$/);
      expect(await append(small, { ...event, data: jsonStringOfBytes(100) })).toMatch(/^[0-9a-f-]{36}$/);
      expect(await appendBatch(small, [{ ...event, data: jsonStringOfBytes(100) }])).toHaveLength(1);
      await createStream(db.sql, "u".repeat(200), 1);
      await createStream(db.sql, "u".repeat(200), 1); // idempotent
    });

    it("keeps the PostgreSQL error as the cause", async () => {
      const error = await rejection(append(db.sql, { ...event, key: "" }));
      expect((error as TributaryInputError).cause).toMatchObject({ code: "22023", constraint_name: "tributary_key" });
    });
  });
});

describeBackends("SQL API with the relay", (backend) => {
  let db: TestDatabase;
  let relay: RelayHandle | null = null;
  const startRelayOn = (database: TestDatabase) => {
    relay = startRelay({ databaseUrl: database.url, slotName: database.slotName, log: () => {} });
    return relay;
  };

  beforeEach(async () => {
    db = await createTestDatabase(backend);
  });
  afterEach(async () => {
    await relay?.stop();
    relay = null;
    await db.drop();
  });

  /** Appends a last event and waits for it: the relay works in commit order, so everything committed before is in too. */
  async function appendSentinelAndWait(): Promise<string> {
    const id = await append(db.sql, { stream: "sentinel", key: "end", type: "Sentinel", data: {} });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const [row] = await db.sql`select 1 from tributary.events where id = ${id}`;
      if (row) return id;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error("the relay did not deliver the sentinel event within 30 s");
  }

  it("loses nothing accepted because of a refused append; a SAVEPOINT keeps the good events of the same transaction", async () => {
    startRelayOn(db);
    const expected: string[] = [];
    const good = (n: number, stream = "orders") => ({ stream, key: `order-${n}`, type: "OrderPlaced", data: { n } });
    const bad = { stream: "orders", key: "", type: "OrderPlaced", data: {} };

    // Committed, then a refused append in another transaction.
    expected.push(...(await db.sql.begin((tx) => appendBatch(tx, [good(1), good(2), good(3)]))));
    expect(await rejection(db.sql.begin((tx) => append(tx, bad)))).toBeInstanceOf(TributaryInputError);
    // A refused append aborts its own transaction, good events included.
    let abortedId = "";
    const aborted = await rejection(
      db.sql.begin(async (tx) => {
        abortedId = await append(tx, good(4));
        await append(tx, bad);
      }),
    );
    expect((aborted as TributaryInputError).code).toBe("INVALID_KEY");
    expect(abortedId).not.toBe("");
    // With a savepoint, the transaction goes on and keeps its good events.
    expected.push(
      ...(await db.sql.begin(async (tx) => {
        const before = await append(tx, good(5));
        const refused = await rejection(tx.savepoint((sp) => append(sp, bad)));
        expect((refused as TributaryInputError).code).toBe("INVALID_KEY");
        const after = await append(tx, good(6));
        return [before, after];
      })),
    );
    // Accepted at the limits: a 200-character stream name, data of exactly the limit.
    expected.push(await append(db.sql, good(7, "s".repeat(200))));
    expected.push(
      await db.sql.begin(async (tx) => {
        return append(tx, { ...good(8), data: jsonStringOfBytes(100) });
      }),
    );
    // Autocommit: a refused append changes nothing.
    expect(await rejection(append(db.sql, bad))).toBeInstanceOf(TributaryInputError);
    expected.push(await append(db.sql, good(9)));

    const sentinel = await appendSentinelAndWait();
    const events = (await readAll(db.sql)).filter((e) => e.id !== sentinel);
    expect(events.map((e) => e.id).sort()).toEqual([...expected].sort());
    expect(events.some((e) => e.id === abortedId)).toBe(false);
    assertDense(await readAll(db.sql));
    expect(events.find((e) => e.stream === "s".repeat(200))?.data).toEqual({ n: 7 });
    expect(events.find((e) => e.key === "order-8")?.data).toBe(jsonStringOfBytes(100));
  });

  it("creates unknown streams with 8 partitions; create_stream fixes another count, and partition = murmur2(key) mod count", async () => {
    startRelayOn(db);
    await db.sql`select tributary.create_stream('three', 3)`;
    const keys = Array.from({ length: 40 }, (_, i) => (i % 4 === 0 ? `ключ-${i}` : i % 4 === 1 ? `🔑${i}` : `key-${i}`));
    await db.sql.begin((tx) =>
      appendBatch(tx, [
        ...keys.map((key, i) => ({ stream: "three", key, type: "T", data: { i } })),
        ...keys.map((key, i) => ({ stream: "auto", key, type: "T", data: { i } })),
      ]),
    );
    const streams = await db.sql<{ name: string; partitions: number }[]>`
      select name, partitions from tributary.streams where name in ('three', 'auto') order by name`;
    expect(streams.map((s) => [s.name, s.partitions])).toEqual([["auto", 8], ["three", 3]]);
    await waitForCount(db.sql, 80, 30_000);
    const events = await readAll(db.sql);
    for (const e of events) {
      const partitions = e.stream === "three" ? 3 : 8;
      expect(e.partition, `${e.stream}/${e.key}`).toBe(partitionFor(e.key, partitions));
    }
    expect(new Set(events.filter((e) => e.stream === "three").map((e) => e.partition))).toEqual(new Set([0, 1, 2]));
    expect(new Set(events.filter((e) => e.stream === "auto").map((e) => e.partition)).size).toBeGreaterThan(3);
    assertDense(events);
  });

  it("keeps tributary.events append-only: UPDATE and DELETE raise and change nothing", async () => {
    startRelayOn(db);
    await append(db.sql, { stream: "s", key: "k", type: "T", data: { v: 1 } });
    await waitForCount(db.sql, 1, 30_000);
    const update = await rejection(db.sql`update tributary.events set data = '{"v": 2}'`);
    expect(update.code).toBe("0A000");
    expect(update.message).toMatch(/tributary\.events is append-only: UPDATE is not allowed/);
    expect(update.hint).toMatch(/compensating event/);
    const remove = await rejection(db.sql`delete from tributary.events where stream = 's'`);
    expect(remove.code).toBe("0A000");
    expect(remove.message).toMatch(/append-only: DELETE is not allowed/);
    const events = await readAll(db.sql);
    expect(events.map((e) => [e.stream, e.offset, e.data])).toEqual([["s", 0, { v: 1 }]]);
  });

  it("reads one partition from an offset with a range scan of the primary key", async () => {
    startRelayOn(db);
    await db.sql`select tributary.create_stream('big', 4)`;
    await db.sql`select tributary.create_stream('other', 4)`;
    // Enough rows that the planner's honest choice, even for a generic plan
    // (offset unknown: a third of the partition estimated), is the ordered
    // index scan that stops after 100 rows. Below ~4000 rows in the partition's
    // stream it rightly prefers a bitmap scan and sorting a few hundred rows.
    const events = Array.from({ length: 8000 }, (_, i) => ({
      stream: i % 2 ? "big" : "other",
      key: `k${i}`,
      type: "T",
      data: { i, pad: "p".repeat(200) },
    }));
    for (let i = 0; i < events.length; i += 2000) await appendBatch(db.sql, events.slice(i, i + 2000));
    await waitForCount(db.sql, events.length, 60_000);
    await db.sql`analyze tributary.events`;
    const read = `select * from tributary.events where stream = $1 and partition = $2 and "offset" >= $3 order by "offset" limit 100`;
    const [segment] = await db.sql<{ table_name: string }[]>`select table_name from tributary.segments where stream = 'big' and segment = 0`;
    const segmentPrimaryKey = `${segment!.table_name}_pkey`;

    const expectOrderedPrimaryKeyRangeScan = (plan: PlanNode) => {
      const nodes = flatten(plan);
      const scans = nodes.filter((n) => /Scan/.test(n["Node Type"]));
      // One segment (migration 0010): the scan is of its primary key, in offset order.
      expect(scans.map((n) => [n["Node Type"], n["Index Name"]]), JSON.stringify(plan)).toEqual([["Index Scan", segmentPrimaryKey]]);
      expect(nodes.some((n) => n["Node Type"] === "Sort")).toBe(false);
      // The offset bound is in the index condition (a range scan), not a filter applied after it.
      expect(scans[0]!["Index Cond"]).toMatch(/stream = .*partition = .*"?offset"? >= /);
      expect(scans[0]!.Filter).toBeUndefined();
    };

    const [partition] = await db.sql<{ rows: number }[]>`select count(*)::int as rows from tributary.events where stream = 'big' and partition = 1`;
    const rows = partition!.rows;
    expect(rows).toBeGreaterThan(800);
    // Many events after the offset: an ordered index scan that stops after 100 rows.
    for (const offset of [0, 200]) {
      const [row] = await db.sql.unsafe(`explain (format json) ${read}`, ["big", 1, offset]);
      expectOrderedPrimaryKeyRangeScan((row!["QUERY PLAN"] as Array<{ Plan: PlanNode }>)[0]!.Plan);
    }
    // Near the head of the partition (fewer events than the limit) the planner may
    // prefer a bitmap scan plus a sort of those few rows: still a range of the primary key.
    const [head] = await db.sql.unsafe(`explain (format json) ${read}`, ["big", 1, rows - 20]);
    const headScans = flatten((head!["QUERY PLAN"] as Array<{ Plan: PlanNode }>)[0]!.Plan).filter((n) => /Scan/.test(n["Node Type"]));
    expect(headScans.some((n) => n["Node Type"] === "Seq Scan")).toBe(false);
    const indexScan = headScans.find((n) => n["Index Name"] === segmentPrimaryKey);
    expect(indexScan?.["Index Cond"]).toMatch(/stream = .*partition = .*"?offset"? >= /);
    // A pooled client with prepared statements ends up with the generic plan.
    const conn = await db.sql.reserve();
    try {
      await conn.unsafe(`prepare read_partition(text, int, bigint) as ${read}`);
      await conn`set plan_cache_mode = force_generic_plan`;
      const [row] = await conn.unsafe(`explain (format json) execute read_partition('big', 1, 200)`);
      expectOrderedPrimaryKeyRangeScan((row!["QUERY PLAN"] as Array<{ Plan: PlanNode }>)[0]!.Plan);
    } finally {
      await conn`reset plan_cache_mode`;
      await conn`deallocate read_partition`;
      conn.release();
    }
  });

  it("captures events appended after migrate, before any relay ever ran (invariant 7)", async () => {
    const committed: string[] = [];
    for (let i = 0; i < 10; i++) committed.push(await append(db.sql, { stream: "early", key: `k${i % 3}`, type: "T", data: { i } }));
    await rejection(
      db.sql.begin(async (tx) => {
        await append(tx, { stream: "early", key: "k0", type: "RolledBack", data: {} });
        throw new Error("roll back");
      }),
    );
    // Let PostgreSQL recycle what it may: only the slot created by migrate keeps these events' WAL.
    await db.sql`checkpoint`;
    await db.sql`select pg_switch_wal()`;
    committed.push(...(await appendBatch(db.sql, [5, 6, 7].map((i) => ({ stream: "early", key: `late${i}`, type: "T", data: { i } })))));
    const [checkpoint] = await db.sql<{ version: string }[]>`
      select version::text from tributary.relay_checkpoints where slot_name = ${db.slotName}`;
    expect(checkpoint!.version).toBe("0"); // no relay has ever written

    startRelayOn(db);
    await waitForCount(db.sql, committed.length, 30_000);
    await appendSentinelAndWait();
    const events = (await readAll(db.sql, "early"));
    expect(events.map((e) => e.id).sort()).toEqual([...committed].sort());
    expect(events.some((e) => e.type === "RolledBack")).toBe(false);
    assertDense(events);
  });
});

interface PlanNode {
  "Node Type": string;
  "Index Name"?: string;
  "Index Cond"?: string;
  Filter?: string;
  Plans?: PlanNode[];
}

function flatten(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(flatten)];
}
