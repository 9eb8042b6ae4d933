/**
 * Retention by whole segments (migrations/0011_retention.sql,
 * docs/ARCHITECTURE.md invariant 15), with the active relay rolling and
 * expiring segments every RETENTION_INTERVAL_MS: by age, by event count, by
 * size; a stream without retention keeps everything; offsets stay dense
 * above the low watermark and are never reused; a protected stream keeps
 * what its group has not committed past.
 *
 * Waits are derived from the settings under test: a segment expires once its
 * successor began more than max_age ago, and a segment rolls once its
 * current one is a tenth of the limit (checked every interval).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sql } from "postgres";
import { appendBatch, consumer, tailPartition, type MissedEvents, type StreamEvent, type TailOptions } from "@tributary/client";
import { startRelay, type RelayHandle } from "@tributary/relay";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { runCli } from "./support/cli.ts";
import { eventually } from "./support/processes.ts";
import { readAll, waitForCount, type StoredEvent } from "./support/streams.ts";

const RETENTION_INTERVAL_MS = 200;

async function append(sql: Sql, stream: string, count: number, type = "T", pad = 0): Promise<void> {
  for (let start = 0; start < count; start += 200) {
    const n = Math.min(200, count - start);
    await sql.begin((tx) => appendBatch(tx, Array.from({ length: n }, (_, i) => ({
      stream, key: `k${start + i}`, type, data: { i: start + i, pad: "x".repeat(pad) },
    }))));
  }
}

async function lowWatermarks(sql: Sql, stream: string): Promise<number[]> {
  const rows = await sql<{ low_watermark: string }[]>`
    select low_watermark::text from tributary.low_watermarks where stream = ${stream} order by partition`;
  return rows.map((r) => Number(r.low_watermark));
}

async function nextOffsets(sql: Sql, stream: string, partitions: number): Promise<number[]> {
  const rows = await sql<{ partition: number; next_offset: string }[]>`
    select partition, next_offset::text from tributary.partition_offsets where stream = ${stream}`;
  const next = Array.from({ length: partitions }, () => 0);
  for (const r of rows) next[r.partition] = Number(r.next_offset);
  return next;
}

/** Waits until the relay numbered `total` events of the stream (retention may have dropped some already). */
async function waitForEnd(sql: Sql, stream: string, total: number): Promise<void> {
  await eventually(`${total} events of ${stream} relayed`, async () => {
    const [row] = await sql<{ n: string }[]>`select coalesce(sum(next_offset), 0)::text as n from tributary.partition_offsets where stream = ${stream}`;
    return Number(row!.n) >= total;
  }, 60_000);
}

/** Each partition holds exactly its offsets from the low watermark to its end: nothing above the watermark is missing. */
async function expectDenseFromWatermark(sql: Sql, stream: string, partitions: number): Promise<StoredEvent[]> {
  const [events, low, next] = [await readAll(sql, stream), await lowWatermarks(sql, stream), await nextOffsets(sql, stream, partitions)];
  for (let p = 0; p < partitions; p++) {
    const offsets = events.filter((e) => e.partition === p).map((e) => e.offset);
    expect(offsets, `${stream}/${p}: offsets ${low[p]}..${next[p]! - 1}`).toEqual(Array.from({ length: next[p]! - low[p]! }, (_, i) => low[p]! + i));
  }
  return events;
}

const pgoutput = backends().filter((b) => b.decoder === "pgoutput");

for (const backend of pgoutput) {
  describe(`retention [${backend.name}]`, () => {
    let db: TestDatabase;
    let relay: RelayHandle;
    const logged: string[] = [];

    beforeAll(async () => {
      db = await createTestDatabase(backend);
      relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, retentionIntervalMs: RETENTION_INTERVAL_MS, log: (m) => void logged.push(m) });
    });

    afterAll(async () => {
      await relay?.stop();
      await db?.drop();
    });

    it("refuses settings that make no sense, saying what to give instead", async () => {
      await db.sql`select tributary.create_stream('settings', 1)`;
      const refused = async (call: Promise<unknown>, message: RegExp) => {
        const error = await call.then(() => null, (e: unknown) => e as { code?: string; message?: string; constraint_name?: string; hint?: string });
        expect(error?.code).toBe("22023");
        expect(error?.constraint_name).toBe("tributary_retention");
        expect(error?.message).toMatch(message);
        expect(error?.hint).toBeTruthy();
      };
      await refused(db.sql`select tributary.set_retention('nope', max_age => '1 day')`, /no stream 'nope'/);
      await refused(db.sql`select tributary.set_retention('settings', max_age => '-1 day')`, /not a positive interval/);
      await refused(db.sql`select tributary.set_retention('settings', max_bytes => 0)`, /not a positive byte count/);
      await refused(db.sql`select tributary.set_retention('settings', max_events => 0)`, /not a positive count/);
      await refused(db.sql`select tributary.set_retention('settings', protect_group => 'g')`, /protects nothing/);
      await db.sql`select tributary.set_retention('settings', max_age => '7 days', max_events => 1000)`;
      const [row] = await db.sql`select max_age::text, max_events::text, segment_age::text, segment_events::text from tributary.retention where stream = 'settings'`;
      expect(row).toEqual({ max_age: "7 days", max_events: "1000", segment_age: "16:48:00", segment_events: "100" });
      await db.sql`select tributary.set_retention('settings')`;
      expect(await db.sql`select * from tributary.retention where stream = 'settings'`).toHaveLength(0);
    });

    it("expires by age: never an event younger than max_age, offsets dense above the low watermark and never reused", async () => {
      const maxAgeMs = 2_000;
      await db.sql`select tributary.create_stream('clicks', 2)`;
      await db.sql`select tributary.set_retention('clicks', max_age => ${`${maxAgeMs} milliseconds`}::interval)`;
      await append(db.sql, "clicks", 300, "Old");
      await waitForCount(db.sql, 300);
      const old = await readAll(db.sql, "clicks");
      const newestOld = Math.max(...old.map((e) => e.committed_at.getTime()));
      // A segment rolls a tenth of max_age after it began, then expires max_age after its successor began.
      await eventually("the old events expire", async () => {
        const present = (await readAll(db.sql, "clicks")).length;
        if (present < 300) {
          const [now] = await db.sql<{ at: Date }[]>`select now() as at`;
          expect(now!.at.getTime() - newestOld, "an event younger than max_age was dropped").toBeGreaterThanOrEqual(maxAgeMs);
        }
        return present === 0;
      }, maxAgeMs * 10 + 20 * RETENTION_INTERVAL_MS + 10_000, RETENTION_INTERVAL_MS / 2);
      const low = await lowWatermarks(db.sql, "clicks");
      expect(low).toEqual(await nextOffsets(db.sql, "clicks", 2));
      await append(db.sql, "clicks", 50, "New");
      await eventually("the new events are relayed", async () => (await readAll(db.sql, "clicks")).length === 50);
      const fresh = await expectDenseFromWatermark(db.sql, "clicks", 2);
      for (const e of fresh) expect(e.offset, "an offset below the watermark was reused").toBeGreaterThanOrEqual(low[e.partition]!);
      expect(logged.some((m) => /retention dropped segment \d+ of stream 'clicks'/.test(m))).toBe(true);
    });

    it("expires by event count, keeping at least max_events", async () => {
      const maxEvents = 400;
      await db.sql`select tributary.create_stream('metrics', 2)`;
      await db.sql`select tributary.set_retention('metrics', max_events => ${maxEvents})`;
      for (let wave = 0; wave < 12; wave++) {
        await append(db.sql, "metrics", 100);
        await waitForEnd(db.sql, "metrics", (wave + 1) * 100);
        await new Promise((r) => setTimeout(r, RETENTION_INTERVAL_MS * 2)); // waves apart: segments roll between them
      }
      await eventually("the oldest segments expire", async () => (await lowWatermarks(db.sql, "metrics")).some((w) => w > 0), 20 * RETENTION_INTERVAL_MS + 10_000);
      await eventually("retention settles", async () => {
        const kept = (await readAll(db.sql, "metrics")).length;
        const [oldest] = await db.sql<{ events: string }[]>`
          select (select sum(f) from unnest(n.first_offsets) f) - (select sum(f) from unnest(g.first_offsets) f) as events
            from tributary.segments g join tributary.segments n on n.stream = g.stream and n.segment > g.segment and n.first_offsets is not null
           where g.stream = 'metrics' order by g.segment, n.segment limit 1`;
        // Kafka's rule: what is kept never drops below the limit, and the oldest segment is needed to reach it.
        expect(kept).toBeGreaterThanOrEqual(maxEvents);
        return oldest === undefined || kept - Number(oldest.events) < maxEvents;
      }, 20 * RETENTION_INTERVAL_MS + 10_000);
      await expectDenseFromWatermark(db.sql, "metrics", 2);
    });

    it("expires by size, keeping at least max_bytes", async () => {
      const maxBytes = 512 * 1024;
      await db.sql`select tributary.create_stream('blobs', 1)`;
      await db.sql`select tributary.set_retention('blobs', max_bytes => ${maxBytes})`;
      for (let wave = 0; wave < 16; wave++) {
        await append(db.sql, "blobs", 50, "T", 2_000);
        await new Promise((r) => setTimeout(r, RETENTION_INTERVAL_MS * 2));
      }
      await eventually("the oldest segments expire", async () => (await lowWatermarks(db.sql, "blobs"))[0]! > 0, 20 * RETENTION_INTERVAL_MS + 10_000);
      const [size] = await db.sql<{ bytes: string }[]>`
        select sum(pg_total_relation_size(format('tributary.%I', table_name)::regclass))::text as bytes from tributary.segments where stream = 'blobs'`;
      expect(Number(size!.bytes)).toBeGreaterThanOrEqual(maxBytes);
      await expectDenseFromWatermark(db.sql, "blobs", 1);
    });

    it("tells consumers and readers below the low watermark, resuming or failing as each chose", async () => {
      await db.sql`select tributary.create_stream('expiring', 2)`;
      await db.sql`insert into tributary.consumer_groups (group_name) values ('resumer'), ('failer')`;
      await db.sql`insert into tributary.group_offsets (group_name, stream, partition, next_offset)
                   select g, 'expiring', p, 0 from unnest(array['resumer', 'failer']) g, generate_series(0, 1) p`;
      await db.sql`select tributary.set_retention('expiring', max_events => 100)`;
      for (let wave = 0; wave < 8; wave++) {
        await append(db.sql, "expiring", 60);
        await waitForEnd(db.sql, "expiring", (wave + 1) * 60);
        await new Promise((r) => setTimeout(r, RETENTION_INTERVAL_MS * 2));
      }
      await eventually("both partitions lose their first events", async () => (await lowWatermarks(db.sql, "expiring")).every((w) => w > 0), 20 * RETENTION_INTERVAL_MS + 10_000);
      await db.sql`select tributary.set_retention('expiring')`; // the watermarks stay where they are from here
      const low = await lowWatermarks(db.sql, "expiring");
      const end = await nextOffsets(db.sql, "expiring", 2);

      const missed: MissedEvents[] = [];
      const handled: StreamEvent[] = [];
      const resumer = await consumer(db.sql, { group: "resumer", streams: ["expiring"], sessionTimeoutMs: 2_000, log: () => {},
        onMissed: (m) => void missed.push(m), handler: (e) => void handled.push(e) });
      try {
        const expected = end[0]! - low[0]! + end[1]! - low[1]!;
        await eventually(`the resumer handles the ${expected} retained events`, () => handled.length >= expected, 30_000);
        expect(handled).toHaveLength(expected);
        expect(missed.sort((a, b) => a.partition - b.partition)).toEqual([0, 1].map((p) => ({
          stream: "expiring", partition: p, position: 0, lowWatermark: low[p], missed: low[p],
        })));
        for (const p of [0, 1]) expect(handled.find((e) => e.partition === p)!.offset).toBe(low[p]);
      } finally {
        await resumer.stop();
      }

      const failer = await consumer(db.sql, { group: "failer", streams: ["expiring"], sessionTimeoutMs: 2_000, log: () => {},
        onOutOfRange: "fail", handler: () => { throw new Error("nothing below the watermark may be handled, nor above it before the error"); } });
      const failed = await failer.done.then(() => null, (e: unknown) => e as { code?: string; message?: string });
      expect(failed?.code).toBe("OFFSET_OUT_OF_RANGE");
      expect(failed?.message).toMatch(/group 'failer': expiring\/[01] was at offset 0, below its low watermark \d+: retention dropped \d+ events/);
      const [kept] = await db.sql<{ n: string }[]>`select sum(next_offset)::text as n from tributary.group_offsets where group_name = 'failer'`;
      expect(kept!.n, "a failing member commits nothing").toBe("0");

      const first = async (options: Partial<TailOptions>) => {
        for await (const e of tailPartition(db.sql, { stream: "expiring", partition: 1, from: 0, reconnect: false, ...options })) return e;
        return null;
      };
      await expect(first({})).rejects.toMatchObject({ code: "OFFSET_OUT_OF_RANGE", message: expect.stringMatching(/expiring\/1 was at offset 0, below its low watermark/) });
      const told: MissedEvents[] = [];
      expect((await first({ onOutOfRange: "resume", onMissed: (m) => void told.push(m) }))!.offset).toBe(low[1]);
      expect(told).toEqual([{ stream: "expiring", partition: 1, position: 0, lowWatermark: low[1], missed: low[1] }]);
      expect((await first({ from: "earliest" }))!.offset).toBe(low[1]);
    });

    it("never expires what the protecting group has not committed past; expires it once the group moves on", async () => {
      await db.sql`select tributary.create_stream('protected', 2)`;
      await db.sql`insert into tributary.consumer_groups (group_name) values ('audit')`;
      await db.sql`select tributary.set_retention('protected', max_events => 100, protect_group => 'audit')`;
      for (let wave = 0; wave < 6; wave++) {
        await append(db.sql, "protected", 100);
        await waitForEnd(db.sql, "protected", (wave + 1) * 100);
        await new Promise((r) => setTimeout(r, RETENTION_INTERVAL_MS * 2));
      }
      const [segments] = await db.sql<{ n: number }[]>`select count(*)::int as n from tributary.segments where stream = 'protected' and first_offsets is not null`;
      expect(segments!.n, "segments rolled").toBeGreaterThan(2);
      await new Promise((r) => setTimeout(r, RETENTION_INTERVAL_MS * 5));
      expect(await lowWatermarks(db.sql, "protected"), "nothing expired: the group committed nothing").toEqual([0, 0]);
      expect((await readAll(db.sql, "protected")).length).toBe(600);

      // The group commits up to the end of partition 0 only: partition 1 still pins every segment.
      const end = await nextOffsets(db.sql, "protected", 2);
      await db.sql`insert into tributary.group_offsets (group_name, stream, partition, next_offset) values ('audit', 'protected', 0, ${end[0]!})`;
      await new Promise((r) => setTimeout(r, RETENTION_INTERVAL_MS * 5));
      expect(await lowWatermarks(db.sql, "protected")).toEqual([0, 0]);
      await db.sql`insert into tributary.group_offsets (group_name, stream, partition, next_offset) values ('audit', 'protected', 1, ${end[1]!})`;
      await eventually("the consumed segments expire", async () => (await lowWatermarks(db.sql, "protected")).some((w) => w > 0), 20 * RETENTION_INTERVAL_MS + 10_000);
      const low = await lowWatermarks(db.sql, "protected");
      for (const p of [0, 1]) expect(low[p]).toBeLessThanOrEqual(end[p]!);
      await expectDenseFromWatermark(db.sql, "protected", 2);
    });

    it("shows retention, retained events and low watermarks in tributary status and groups; a group behind retention stands out", async () => {
      // After the tests above: 'expiring' lost its first events, and group 'failer' is still committed at 0.
      const env = { DATABASE_URL: db.url };
      const status = await runCli(["status", "--json"], env);
      expect([status.code, status.stderr]).toEqual([0, ""]);
      const streams = (JSON.parse(status.stdout) as { streams: Array<Record<string, unknown>> }).streams;
      const end = await nextOffsets(db.sql, "expiring", 2);
      const low = await lowWatermarks(db.sql, "expiring");
      expect(streams.find((s) => s.stream === "expiring")).toMatchObject({
        events: end[0]! + end[1]!, retained: end[0]! - low[0]! + end[1]! - low[1]!, lowWatermarks: low, retention: null, bytes: expect.any(Number),
      });
      expect(streams.find((s) => s.stream === "clicks")).toMatchObject({ retention: { maxAge: "00:00:02", maxBytes: null, maxEvents: null, protectGroup: null } });
      const table = await runCli(["status"], env);
      expect(table.stdout).toMatch(/^STREAM +PARTITIONS +EVENTS +RETAINED +SIZE +RETENTION$/m);
      expect(table.stdout).toMatch(/^protected +2 +600 +\d+ +\S+ \S+ +100 events, unread by group audit kept$/m);
      expect(table.stdout).toMatch(/^settings +1 +0 +0 +.* everything$/m); // its retention was removed

      const groups = await runCli(["groups", "--group", "failer", "--json"], env);
      expect([groups.code, groups.stderr]).toEqual([0, ""]);
      const failer = JSON.parse(groups.stdout) as { partitions: Array<{ partition: number; lowWatermark: number; behindRetention: boolean; committedOffset: number }> };
      expect(failer.partitions.map((p) => [p.partition, p.committedOffset, p.lowWatermark, p.behindRetention])).toEqual([[0, 0, low[0], true], [1, 0, low[1], true]]);
      const text = await runCli(["groups", "--group", "failer"], env);
      expect(text.stdout).toContain(`BEHIND RETENTION: 2 partitions committed below the low watermark; ${low[0]! + low[1]!} events expired unread`);
      expect(text.stdout).toMatch(/^ +expiring +0 +- +- +\d+ +0 \(expired\)/m);
    });

    it("keeps every event of a stream without retention, in its one segment", async () => {
      await db.sql`select tributary.create_stream('ledger', 2)`;
      await append(db.sql, "ledger", 500);
      await eventually("the ledger is relayed", async () => (await readAll(db.sql, "ledger")).length === 500);
      await new Promise((r) => setTimeout(r, RETENTION_INTERVAL_MS * 5));
      expect(await lowWatermarks(db.sql, "ledger")).toEqual([0, 0]);
      expect(await db.sql`select segment from tributary.segments where stream = 'ledger'`).toEqual([{ segment: 0 }]);
      await expectDenseFromWatermark(db.sql, "ledger", 2);
    });
  });
}
