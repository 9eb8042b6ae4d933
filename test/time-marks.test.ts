/**
 * Seeking by time with time marks (migrations/0013_time_marks.sql): the
 * latest commit time of each block of 10,000 offsets, marked after the
 * events are written, lets tributary.first_offset_at() start at the block
 * that can hold the time instead of the partition's first event.
 *
 * The answers are checked against the definition (the least offset
 * committed at or after the time), also when commit times fall back (a
 * clock stepped back), and the scan is checked to read at most a block:
 * the heap tuples its index scans fetched, counted by the server for the
 * transaction.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sql } from "postgres";
import { appendBatch } from "@tributary/client";
import { startRelay } from "@tributary/relay";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { eventually } from "./support/processes.ts";

const BLOCK = 10_000;
const EPOCH = Date.parse("2026-12-01T00:00:00Z");

/**
 * `count` events of one partition from offset `from` into segment `segment`,
 * written as the relay writes them (superuser): event o committed at EPOCH +
 * o ms, except those `stepBack` names, committed `by` ms earlier.
 */
async function insertEvents(sql: Sql, stream: string, from: number, count: number, segment: number, stepBack?: { from: number; to: number; by: number }): Promise<void> {
  const back = stepBack ?? { from: -1, to: -1, by: 0 };
  await sql`
    insert into tributary.events (stream, partition, "offset", id, key, type, data, headers, committed_at, segment)
    select ${stream}, 0, o, gen_random_uuid(), 'k', 'T', '{}', '{}',
           ${new Date(EPOCH).toISOString()}::timestamptz + (o - case when o between ${back.from} and ${back.to} then ${back.by} else 0 end) * interval '1 ms',
           ${segment}
      from generate_series(${from}::bigint, ${from + count - 1}::bigint) o`;
  await sql`
    insert into tributary.partition_offsets (stream, partition, next_offset) values (${stream}, 0, ${from + count})
    on conflict (stream, partition) do update set next_offset = excluded.next_offset`;
}

const at = (ms: number): string => new Date(EPOCH + ms).toISOString();

/** The answer by definition: a scan of the whole partition. */
async function leastOffsetAt(sql: Sql, stream: string, time: string): Promise<string | null> {
  const [row] = await sql<{ offset: string | null }[]>`
    select min("offset")::text as offset from tributary.events where stream = ${stream} and partition = 0 and committed_at >= ${time}::timestamptz`;
  return row!.offset;
}

/** first_offset_at's answer and the heap tuples its scans fetched from the stream's segments. */
async function seek(sql: Sql, stream: string, time: string): Promise<{ offset: string | null; fetched: number }> {
  return sql.begin(async (tx) => {
    // Counted on the index an index scan fetched through (pg_stat_user_indexes.idx_tup_fetch).
    const fetched = () => tx<{ n: string }[]>`
      select coalesce(sum(pg_stat_get_xact_tuples_fetched(i.indexrelid)), 0)::text as n
        from tributary.segments g join pg_index i on i.indrelid = to_regclass(format('tributary.%I', g.table_name))
       where g.stream = ${stream}`;
    const [before] = await fetched();
    const [row] = await tx<{ offset: string | null }[]>`select tributary.first_offset_at(${stream}, 0, ${time}::timestamptz)::text as offset`;
    const [after] = await fetched();
    return { offset: row!.offset, fetched: Number(after!.n) - Number(before!.n) };
  });
}

async function marks(sql: Sql, stream: string): Promise<Array<{ offset: string; last: string }>> {
  return sql<Array<{ offset: string; last: string }>>`
    select "offset"::text as offset, to_char(last_committed_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as last
      from tributary.time_marks where stream = ${stream} and partition = 0 order by "offset"`;
}

async function markTimes(sql: Sql): Promise<number> {
  const [row] = await sql<{ marked: number }[]>`select tributary.mark_times() as marked`;
  return row!.marked;
}

const pgoutput = backends().filter((b) => b.decoder === "pgoutput");

for (const backend of pgoutput) {
  describe(`time marks [${backend.name}]`, () => {
    let db: TestDatabase;

    beforeAll(async () => {
      db = await createTestDatabase(backend);
    });

    afterAll(async () => {
      await db?.drop();
    });

    it("marks each completed block with its latest commit time; a seek reads at most a block, and answers by the definition", async () => {
      await db.sql`select tributary.create_stream('long', 1)`;
      // 45,000 events; commit times fall back by 30 s over offsets 25,000–25,999 (a clock stepped back).
      await insertEvents(db.sql, "long", 0, 45_000, 0, { from: 25_000, to: 25_999, by: 30_000 });
      const times = [-1, 0, 1, 9_999, 10_000, 12_345, 24_999, 25_000, 25_500, 26_000, 39_999, 44_999, 45_000, 99_000].map(at);

      // Before any mark: right answers, from a scan of the partition from its start.
      const unmarked = await seek(db.sql, "long", at(40_000));
      expect(unmarked.offset).toBe("40000");
      expect(unmarked.fetched).toBeGreaterThan(40_000);

      expect(await markTimes(db.sql)).toBe(4); // blocks 0, 10,000, 20,000 and 30,000; 40,000–44,999 is not complete
      expect(await marks(db.sql, "long")).toEqual([
        { offset: "0", last: at(9_999) },
        { offset: "10000", last: at(19_999) },
        { offset: "20000", last: at(29_999) }, // its fallen-back events change nothing: the latest counts
        { offset: "30000", last: at(39_999) },
      ]);
      expect(await markTimes(db.sql)).toBe(0);

      for (const time of times) {
        const { offset, fetched } = await seek(db.sql, "long", time);
        expect(offset, `first_offset_at(${time})`).toBe(await leastOffsetAt(db.sql, "long", time));
        // One block at most (or the unmarked rest, 5,000): never the partition from its start.
        expect(fetched, `heap tuples fetched seeking ${time}`).toBeLessThanOrEqual(BLOCK);
      }
      // Offsets 25,000–25,999 were committed 30 s early: the first at or after 25.5 s is 26,000, not 25,500.
      expect((await seek(db.sql, "long", at(25_500))).offset).toBe("26000");
      expect((await seek(db.sql, "long", at(24_999))).offset).toBe("24999");
    });

    it("forgets the blocks retention dropped and marks on from the low watermark", async () => {
      await db.sql`select tributary.create_stream('kept', 1)`;
      await insertEvents(db.sql, "kept", 0, 32_000, 0);
      expect(await markTimes(db.sql)).toBe(3);
      // Segment 1 begins at 32,000 (as the relay begins one) and holds the next 21,000.
      await db.sql`select tributary.create_segment('kept', 1)`;
      await db.sql`update tributary.segments set first_offsets = '{32000}', started_at = now() where stream = 'kept' and segment = 1`;
      await insertEvents(db.sql, "kept", 32_000, 21_000, 1);
      await db.sql`select tributary.set_retention('kept', max_events => 1)`;
      const dropped = await db.sql<{ segment: number }[]>`select segment from tributary.expire_segments()`;
      expect(dropped.map((d) => d.segment)).toEqual([0]);

      // Blocks 0–20,000 are gone with their segment; 30,000 holds the watermark (32,000), 40,000 is complete, 50,000 not.
      expect(await markTimes(db.sql)).toBe(2);
      expect(await marks(db.sql, "kept")).toEqual([{ offset: "30000", last: at(39_999) }, { offset: "40000", last: at(49_999) }]);
      expect(await markTimes(db.sql)).toBe(0);
      for (const ms of [0, 31_999, 32_000, 45_678, 52_999, 53_000]) {
        expect((await seek(db.sql, "kept", at(ms))).offset, `first_offset_at(${at(ms)})`).toBe(await leastOffsetAt(db.sql, "kept", at(ms)));
      }
    });

    it("is run by the active relay with retention", async () => {
      await db.sql`select tributary.create_stream('relayed', 1)`;
      const relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, retentionIntervalMs: 200, log: () => {} });
      try {
        for (let start = 0; start < BLOCK + 10; start += 1_000) {
          await db.sql.begin((tx) => appendBatch(tx, Array.from({ length: 1_000 }, (_, i) => ({ stream: "relayed", key: `k${start + i}`, type: "T", data: {} }))));
        }
        await eventually("the relay to mark the first block of 'relayed'", async () => (await marks(db.sql, "relayed")).length === 1, 60_000);
        const [first] = await marks(db.sql, "relayed");
        const [latest] = await db.sql<{ last: string }[]>`
          select to_char(max(committed_at) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as last
            from tributary.events where stream = 'relayed' and "offset" < ${BLOCK}`;
        expect(first).toEqual({ offset: "0", last: latest!.last });
      } finally {
        await relay.stop();
      }
    });
  });
}
