/**
 * Invariant 6: the relay's memory stays bounded whatever the size of a
 * transaction or of the backlog. The relay runs in its own process and
 * reports its RSS; the limit is the 300 MB.
 *
 * Sizes: TRIBUTARY_MEMORY_TX_EVENTS (default 1,000,000 events in one
 * transaction) and TRIBUTARY_MEMORY_BACKLOG_EVENTS (default 1,000,000 events
 * in 1,000-event transactions; `npm run bench:memory` runs 10,000,000).
 * The events are the messages append() emits, signed the same way, written
 * set-based (emitSignedEvents): what is under test is the relay, not append.
 *
 * Table capture (invariant 14 holds 6 for row changes too):
 * TRIBUTARY_MEMORY_CDC_SNAPSHOT_ROWS, a captured table's snapshot under
 * concurrent writes, and TRIBUTARY_MEMORY_CDC_TX_ROWS, one transaction that
 * updates that many captured rows. Both default to 100,000 rows, 20 to 50
 * seconds together on the 2-core machine (1,000,000 of each take three and a
 * half minutes); `npm run bench:memory` runs 1,000,000 of each. 100,000 is
 * still 50 snapshot chunks and 20 batches of one transaction: memory kept per
 * chunk or per batch would show.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { RelayChildren, eventually } from "./support/processes.ts";
import { assertDense, emitSignedEvents, waitForCount } from "./support/streams.ts";

const MB = 1 << 20;
const LIMIT = 300 * MB;
const txEvents = Number(process.env.TRIBUTARY_MEMORY_TX_EVENTS ?? 1_000_000);
const backlogEvents = Number(process.env.TRIBUTARY_MEMORY_BACKLOG_EVENTS ?? 1_000_000);
const snapshotRows = Number(process.env.TRIBUTARY_MEMORY_CDC_SNAPSHOT_ROWS ?? 100_000);
const cdcTxRows = Number(process.env.TRIBUTARY_MEMORY_CDC_TX_ROWS ?? 100_000);

/**
 * Generous per-test limit that grows with the size (bench:memory runs 10M events).
 * The events are emitted as append signs them (emitSignedEvents: ~15 µs per
 * event on this machine, append itself ~85 µs), then relayed.
 */
const timeoutFor = (events: number) => 120_000 + Math.ceil(events * 0.25);

const backend = backends().find((b) => b.name === "pg18-pgoutput") ?? backends()[0]!;

describe(`bounded relay memory [${backend.name}]`, () => {
  let db: TestDatabase;
  let children: RelayChildren;

  beforeAll(async () => {
    children = await RelayChildren.build();
  });
  afterAll(async () => {
    await children.dispose();
  });
  beforeEach(async () => {
    db = await createTestDatabase(backend);
  });
  afterEach(async () => {
    await children.killAll();
    await db.drop();
  });

  async function relayAll(expected: number): Promise<number> {
    const relay = children.start({ databaseUrl: db.url, slotName: db.slotName, reportRss: true });
    await waitForCount(db.sql, expected, timeoutFor(expected));
    return relay.peakRss();
  }

  it(`relays one transaction of ${txEvents.toLocaleString("en")} events under 300 MB RSS`, async () => {
    await emitSignedEvents(db.sql, "big", txEvents);
    const peak = await relayAll(txEvents);
    console.log(`one ${txEvents}-event transaction: relay peak RSS ${(peak / MB).toFixed(0)} MB`);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(LIMIT);
    const [row] = await db.sql<{ n: string; gaps: string }[]>`
      select count(*)::text as n, count(*) filter (where "offset" <> rn - 1)::text as gaps
        from (select "offset", row_number() over (partition by partition order by "offset") as rn
                from tributary.events where stream = 'big') t`;
    expect(Number(row!.n)).toBe(txEvents);
    expect(Number(row!.gaps)).toBe(0);
  }, timeoutFor(txEvents));

  it(`relays a backlog of ${backlogEvents.toLocaleString("en")} events under 300 MB RSS`, async () => {
    const perTx = 1000;
    for (let done = 0; done < backlogEvents; done += perTx * 50) {
      const txs = Math.min(50, Math.ceil((backlogEvents - done) / perTx));
      await Promise.all(Array.from({ length: txs }, (_, t) => emitSignedEvents(db.sql, "backlog", perTx, done + t * perTx)));
    }
    const peak = await relayAll(backlogEvents);
    console.log(`backlog of ${backlogEvents} events: relay peak RSS ${(peak / MB).toFixed(0)} MB`);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(LIMIT);
    const sample = await db.sql`select stream, partition, "offset"::int as "offset" from tributary.events where stream = 'backlog' and partition = 0 order by "offset"`;
    assertDense(sample as never);
  }, timeoutFor(backlogEvents));

  /** `wide`: rows 1..rows of (id, v = 0, 160 characters of pad), as large as the events above. */
  async function wideTable(rows: number): Promise<void> {
    await db.sql`create table wide (id int primary key, v int not null, pad text not null)`;
    await db.sql`insert into wide select g, 0, repeat('x', 160) from generate_series(1, ${rows}::int) g`;
    await db.sql`analyze wide`;
  }

  /**
   * Replaying each key's events of public.wide (its last event: all of a
   * key's events are in one partition) gives the table: the number of keys
   * where it does not, and of keys the snapshot read twice.
   */
  async function replayMismatches(): Promise<{ wrong: number; readTwice: number }> {
    const [row] = await db.sql<{ wrong: string; read_twice: string }[]>`
      with last as (
        select distinct on (key) key, data from tributary.events where stream = 'public.wide' order by key, "offset" desc
      )
      select count(*) filter (where case when t.id is null then l.data->>'op' <> 'd'
                                         else l.key is null or l.data->>'op' = 'd' or l.data->'after' <> to_jsonb(t) end)::text as wrong,
             (select count(*) from (select key from tributary.events where stream = 'public.wide' and data->>'op' = 'r'
                                     group by key having count(*) > 1) twice)::text as read_twice
        from last l full join wide t on l.key = t.id::text`;
    return { wrong: Number(row!.wrong), readTwice: Number(row!.read_twice) };
  }

  it(`snapshots a captured table of ${snapshotRows.toLocaleString("en")} rows under concurrent writes under 300 MB RSS`, async () => {
    await wideTable(snapshotRows);
    const relay = children.start({ databaseUrl: db.url, slotName: db.slotName, reportRss: true });
    await relay.waitActive(1, 60_000);
    await db.sql`select tributary.capture('wide', '{"partitions": 8}')`;
    // Two writers update, insert and delete rows all over the table while it is read in chunks
    // (a few hundred writes a second each: paced, so on 2 cores they do not starve the relay).
    let writing = true;
    const writers = Array.from({ length: 2 }, async (_, w) => {
      for (let n = 0; writing; n++) {
        const id = 1 + Math.floor(Math.random() * snapshotRows);
        if (n % 10 === 9) await db.sql`delete from wide where id = ${id}`;
        else if (n % 10 === 8) await db.sql`insert into wide values (${snapshotRows + 1 + n * 2 + w}, ${n}, 'new') on conflict do nothing`;
        else await db.sql`update wide set v = v + 1 where id = ${id}`;
        await new Promise((r) => setTimeout(r, 2));
      }
    });
    await eventually("the snapshot to end", async () => {
      if (!relay.alive) throw new Error(`the relay died: ${relay.describe()}`);
      const [capture] = await db.sql<{ state: string }[]>`select state from tributary.captures where "table" = 'public.wide'`;
      return capture?.state === "streaming";
    }, timeoutFor(snapshotRows), 200).finally(() => (writing = false));
    await Promise.all(writers);
    // A marker committed after the last write: once it is in, so is every change before it.
    await db.sql`select tributary.append('marker', 'm', 'marker', '{}')`;
    await eventually("the relay to pass the marker", async () => (await db.sql`select 1 from tributary.events where stream = 'marker'`).length === 1, 60_000);
    const peak = relay.peakRss();
    console.log(`snapshot of ${snapshotRows} captured rows under writes: relay peak RSS ${(peak / MB).toFixed(0)} MB`);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(LIMIT);
    const [reads] = await db.sql<{ n: string }[]>`select count(*)::text as n from tributary.events where stream = 'public.wide' and data->>'op' = 'r'`;
    expect(Number(reads!.n), "rows the snapshot read").toBeGreaterThan(snapshotRows * 0.9);
    expect(await replayMismatches()).toEqual({ wrong: 0, readTwice: 0 });
  }, timeoutFor(snapshotRows) + 60_000);

  it(`relays one transaction updating ${cdcTxRows.toLocaleString("en")} captured rows under 300 MB RSS`, async () => {
    await wideTable(cdcTxRows);
    await db.sql`select tributary.capture('wide', '{"snapshot": "none", "partitions": 8}')`;
    await db.sql`update wide set v = v + 1`;
    const relay = children.start({ databaseUrl: db.url, slotName: db.slotName, reportRss: true });
    await waitForCount(db.sql, cdcTxRows, timeoutFor(cdcTxRows));
    const peak = relay.peakRss();
    console.log(`one transaction updating ${cdcTxRows} captured rows: relay peak RSS ${(peak / MB).toFixed(0)} MB`);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(LIMIT);
    const [row] = await db.sql<{ n: string; updates: string; gaps: string }[]>`
      select count(*)::text as n, count(*) filter (where data->>'op' = 'u')::text as updates, count(*) filter (where "offset" <> rn - 1)::text as gaps
        from (select "offset", data, row_number() over (partition by partition order by "offset") as rn
                from tributary.events where stream = 'public.wide') t`;
    expect(row).toEqual({ n: String(cdcTxRows), updates: String(cdcTxRows), gaps: "0" });
    const [tx] = await db.sql<{ n: string }[]>`select count(distinct data->'source'->>'txId')::text as n from tributary.events where stream = 'public.wide'`;
    expect(tx!.n, "one transaction").toBe("1");
    expect(await replayMismatches()).toEqual({ wrong: 0, readTwice: 0 });
  }, timeoutFor(cdcTxRows));
});
