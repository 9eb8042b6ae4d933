/**
 * Retention under faults and over time (docs/ARCHITECTURE.md invariant 15):
 *   - kill -9 of the relay while its retention run is in the middle of
 *     dropping segments: no segment is half dropped (every catalog row has
 *     its table and every table its row), and the next relay's run finishes;
 *   - a soak at a steady append rate with retention by age: the stream's
 *     segments, table and index sizes stay bounded (printed over time), and
 *     retention leaves no dead tuples in the stream table; a group member and
 *     a reader following the stream meanwhile see every event but those
 *     they were told they missed.
 * One server (the mechanism is SQL and the relay's; the decoders do not
 * take part).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sql } from "postgres";
import { appendBatch, consumer, tailStream, type MissedEvents, type StreamEvent } from "@tributary/client";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { eventually, RelayChildren } from "./support/processes.ts";
import { readAll } from "./support/streams.ts";

const RETENTION_INTERVAL_MS = 200;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function append(sql: Sql, stream: string, count: number): Promise<void> {
  await sql.begin((tx) => appendBatch(tx, Array.from({ length: count }, (_, i) => ({ stream, key: `k${i}`, type: "T", data: { i, pad: "p".repeat(100) } }))));
}

/** Catalog and tables agree: every segment row has its table, every partition of the stream's table its row. */
async function expectConsistent(sql: Sql, stream: string): Promise<void> {
  const [row] = await sql<{ missing_tables: string[]; missing_rows: string[] }[]>`
    select array(select g.table_name from tributary.segments g
                  where g.stream = ${stream} and to_regclass(format('tributary.%I', g.table_name)) is null) as missing_tables,
           array(select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid
                  where i.inhparent = to_regclass(format('tributary.%I', (select events_table from tributary.streams where name = ${stream})))
                    and not exists (select 1 from tributary.segments g where g.stream = ${stream} and g.table_name = c.relname)) as missing_rows`;
  expect(row, `${stream}: catalog and tables disagree`).toEqual({ missing_tables: [], missing_rows: [] });
  // Dense from the low watermark: nothing above it is missing.
  const events = await readAll(sql, stream);
  const low = await sql<{ partition: number; low_watermark: string }[]>`select partition, low_watermark::text from tributary.low_watermarks where stream = ${stream}`;
  for (const { partition, low_watermark } of low) {
    const offsets = events.filter((e) => e.partition === partition).map((e) => e.offset);
    offsets.forEach((o, i) => expect(o, `${stream}/${partition}`).toBe(Number(low_watermark) + i));
  }
}

const backend = backends().find((b) => b.decoder === "pgoutput")!;

describe(`retention faults [${backend.name}]`, () => {
  let db: TestDatabase;
  let children: RelayChildren;

  beforeAll(async () => {
    children = await RelayChildren.build();
    db = await createTestDatabase(backend);
  });

  afterAll(async () => {
    await children?.dispose();
    await db?.drop();
  });

  it("kill -9 in the middle of a retention run leaves no half-dropped segment, and the next run finishes", async () => {
    const maxAgeMs = 1_000;
    const streams = ["crash-a", "crash-b"];
    for (const s of streams) {
      await db.sql`select tributary.create_stream(${s}, 2)`;
      await db.sql`select tributary.set_retention(${s}, max_age => ${`${maxAgeMs} milliseconds`}::interval)`;
    }
    const first = children.start({ databaseUrl: db.url, slotName: db.slotName, retentionIntervalMs: RETENTION_INTERVAL_MS });
    await first.waitActive();
    // Segments roll every tenth of max_age: waves for a while leave several to expire.
    for (let wave = 0; wave < 10; wave++) {
      for (const s of streams) await append(db.sql, s, 20);
      await sleep(maxAgeMs / 5);
    }
    // Hold crash-b's table: its drop waits (lock_timeout) after crash-a's drops, inside the same run.
    const [b] = await db.sql<{ events_table: string }[]>`select events_table from tributary.streams where name = 'crash-b'`;
    const blocker = await db.sql.reserve();
    let backendPid = 0;
    try {
      await blocker`begin`;
      await blocker.unsafe(`lock table tributary."${b!.events_table}" in access share mode`);
      await eventually("a retention run waiting on crash-b's table", async () => {
        const [waiting] = await db.sql<{ pid: number }[]>`
          select pid from pg_stat_activity
           where application_name = 'tributary-relay' and query like '%expire_segments%' and wait_event_type = 'Lock'`;
        backendPid = waiting?.pid ?? 0;
        return backendPid !== 0;
      }, 30_000, 10);
      await first.kill();
      // The dead host's connection, as the server finds out about it.
      await db.sql`select pg_terminate_backend(${backendPid})`;
      await eventually("the run's backend to end", async () => (await db.sql`select 1 from pg_stat_activity where pid = ${backendPid}`).length === 0);
      for (const s of streams) await expectConsistent(db.sql, s);
    } finally {
      await blocker`rollback`.catch(() => undefined);
      blocker.release();
    }

    const second = children.start({ databaseUrl: db.url, slotName: db.slotName, retentionIntervalMs: RETENTION_INTERVAL_MS });
    await second.waitActive();
    await eventually("the next runs expire everything older than max_age", async () => {
      const [row] = await db.sql<{ kept: string }[]>`select count(*)::text as kept from tributary.events where stream = any (${streams}::text[])`;
      return row!.kept === "0";
    }, maxAgeMs * 10 + 20 * RETENTION_INTERVAL_MS + 10_000, RETENTION_INTERVAL_MS / 2);
    for (const s of streams) await expectConsistent(db.sql, s);
    await second.kill();
  });

  it("a steady append rate with retention on keeps the stream's size bounded, with no dead tuples from retention", async () => {
    const maxAgeMs = 2_000;
    const rate = 400; // events per second
    const seconds = 16;
    await db.sql`select tributary.create_stream('soak', 4)`;
    await db.sql`select tributary.set_retention('soak', max_age => ${`${maxAgeMs} milliseconds`}::interval)`;
    const relay = children.start({ databaseUrl: db.url, slotName: db.slotName, retentionIntervalMs: RETENTION_INTERVAL_MS });
    await relay.waitActive();
    // A group member and a reader follow the stream while retention runs: each must see every event except what it was told it missed.
    const seen = { member: new Map<number, number[]>(), reader: new Map<number, number[]>() };
    const missed = { member: [] as MissedEvents[], reader: [] as MissedEvents[] };
    const note = (who: "member" | "reader", e: StreamEvent) => {
      const list = seen[who].get(e.partition) ?? [];
      seen[who].set(e.partition, list);
      list.push(e.offset);
    };
    const member = await consumer(db.sql, { group: "soak-follower", streams: ["soak"], sessionTimeoutMs: 5_000, log: () => {},
      onMissed: (m) => void missed.member.push(m), handler: (e) => note("member", e) });
    const stopReader = new AbortController();
    const reading = (async () => {
      for await (const e of tailStream(db.sql, { stream: "soak", from: "earliest", signal: stopReader.signal, onOutOfRange: "resume", onMissed: (m) => void missed.reader.push(m) })) note("reader", e);
    })();
    const samples: Array<{ at: number; events: number; segments: number; table: number; indexes: number; dead: number }> = [];
    const started = Date.now();
    let appended = 0;
    while (Date.now() - started < seconds * 1000) {
      const due = Math.floor(((Date.now() - started) / 1000) * rate) - appended;
      if (due > 0) {
        await append(db.sql, "soak", due);
        appended += due;
      }
      if (samples.length === 0 || Date.now() - started - samples.at(-1)!.at >= 1000) {
        const [size] = await db.sql<{ events: string; segments: number; table: string; indexes: string; dead: string }[]>`
          select (select count(*) from tributary.events where stream = 'soak')::text as events,
                 count(*)::int as segments,
                 coalesce(sum(pg_table_size(to_regclass(format('tributary.%I', table_name)))), 0)::text as table,
                 coalesce(sum(pg_indexes_size(to_regclass(format('tributary.%I', table_name)))), 0)::text as indexes,
                 (select coalesce(sum(n_dead_tup), 0) from pg_stat_user_tables t
                   where t.relid in (select to_regclass(format('tributary.%I', g.table_name)) from tributary.segments g where g.stream = 'soak'))::text as dead
            from tributary.segments where stream = 'soak'`;
        samples.push({ at: Date.now() - started, events: Number(size!.events), segments: size!.segments, table: Number(size!.table), indexes: Number(size!.indexes), dead: Number(size!.dead) });
      }
      await sleep(50);
    }
    await relay.kill();
    const [ends] = await db.sql<{ next: string[] }[]>`select array(select next_offset::text from tributary.partition_offsets where stream = 'soak' order by partition) as next`;
    const end = ends!.next.map(Number);
    const reached = (who: "member" | "reader") => end.every((n, p) => (seen[who].get(p)?.at(-1) ?? -1) >= n - 1);
    await eventually("the follower and the reader reach the end", () => reached("member") && reached("reader"), 60_000);
    await member.stop();
    stopReader.abort();
    await reading;
    for (const who of ["member", "reader"] as const) {
      for (let p = 0; p < end.length; p++) {
        const gaps = missed[who].filter((m) => m.partition === p);
        const expected = Array.from({ length: end[p]! }, (_, o) => o).filter((o) => !gaps.some((m) => o >= m.position && o < m.lowWatermark));
        expect([...new Set(seen[who].get(p))].sort((a, b) => a - b), `${who}, partition ${p}: every event but the ones it was told it missed`).toEqual(expected);
      }
    }
    console.log(`soak: ${rate} events/s for ${seconds} s, max_age ${maxAgeMs} ms\n` + samples.map((s) =>
      `  ${(s.at / 1000).toFixed(1)} s: ${s.events} events in ${s.segments} segments, table ${(s.table / 1024).toFixed(0)} kB + indexes ${(s.indexes / 1024).toFixed(0)} kB, dead tuples ${s.dead}`).join("\n"));
    // Kept: about max_age of events, plus a segment (a tenth) still being written and the runs' spacing.
    const bound = rate * (maxAgeMs * 1.1 + maxAgeMs / 10 + 3 * RETENTION_INTERVAL_MS) / 1000;
    const steady = samples.filter((s) => s.at >= maxAgeMs * 2);
    expect(steady.length).toBeGreaterThan(5);
    for (const s of steady) {
      expect(s.events, `${s.events} events kept at ${s.at} ms (bound ${bound})`).toBeLessThanOrEqual(bound * 1.5);
      expect(s.segments).toBeLessThanOrEqual(20);
      expect(s.dead, "retention drops whole segments: no dead tuples").toBe(0);
    }
    const firstHalf = Math.max(...steady.slice(0, steady.length >> 1).map((s) => s.table + s.indexes));
    const secondHalf = Math.max(...steady.slice(steady.length >> 1).map((s) => s.table + s.indexes));
    expect(secondHalf, "table and indexes do not grow once retention runs").toBeLessThanOrEqual(firstHalf * 1.5);
    expect(appended).toBeGreaterThan(rate * seconds * 0.9);
  });
});
