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
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { RelayChildren } from "./support/processes.ts";
import { assertDense, emitSignedEvents, waitForCount } from "./support/streams.ts";

const MB = 1 << 20;
const LIMIT = 300 * MB;
const txEvents = Number(process.env.TRIBUTARY_MEMORY_TX_EVENTS ?? 1_000_000);
const backlogEvents = Number(process.env.TRIBUTARY_MEMORY_BACKLOG_EVENTS ?? 1_000_000);

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
});
