/**
 * The core contract, on every backend: the stream equals exactly the
 * committed events (invariant 1), offsets are dense (2), order within a
 * partition is commit order and partitions follow murmur2 (3).
 */
import { afterEach, beforeEach, expect, it } from "vitest";
import { append, appendBatch, createStream, partitionFor } from "@tributary/client";
import { startRelay, type RelayHandle } from "@tributary/relay";
import { createTestDatabase, describeBackends, type TestDatabase } from "./support/backends.ts";
import { assertDense, readAll, waitForCount } from "./support/streams.ts";

class Rollback extends Error {}

describeBackends("pipeline", (backend) => {
  let db: TestDatabase;
  let relay: RelayHandle;

  beforeEach(async () => {
    db = await createTestDatabase(backend);
    relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
  });
  afterEach(async () => {
    await relay.stop();
    await db.drop();
  });

  it("copies exactly the committed events of many concurrent writers", async () => {
    const writers = 8;
    const transactionsPerWriter = 40;
    const committed: Array<{ id: string; key: string; seq: number }> = [];
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let t = 0; t < transactionsPerWriter; t++) {
          const size = 1 + ((w + t) % 5);
          const rollback = (w * 7 + t) % 5 === 0;
          try {
            const ids = await db.sql.begin(async (tx) => {
              const events = Array.from({ length: size }, (_, i) => ({
                stream: w % 2 ? "orders" : "payments",
                key: `w${w}-k${i % 3}`,
                type: "Tested",
                data: { w, t, i },
                headers: { traceparent: `00-${w}-${t}-${i}` },
              }));
              const ids = await appendBatch(tx, events);
              if (rollback) throw new Rollback();
              return ids.map((id, i) => ({ id, key: events[i]!.key, seq: t * 10 + i }));
            });
            committed.push(...ids);
          } catch (error) {
            if (!(error instanceof Rollback)) throw error;
          }
        }
      }),
    );
    await waitForCount(db.sql, committed.length);
    await new Promise((r) => setTimeout(r, 300)); // nothing more may arrive
    const events = await readAll(db.sql);
    expect(events.length).toBe(committed.length);
    expect(new Set(events.map((e) => e.id))).toEqual(new Set(committed.map((c) => c.id)));
    assertDense(events);
    // Per key, stream order is the writer's commit order.
    const streamSeq = new Map<string, number[]>();
    const seqOf = new Map(committed.map((c) => [c.id, c.seq]));
    for (const e of events) {
      expect(e.partition).toBe(partitionFor(e.key, 8));
      streamSeq.set(e.key, [...(streamSeq.get(e.key) ?? []), seqOf.get(e.id)!]);
    }
    for (const [key, seqs] of streamSeq) expect(seqs, key).toEqual([...seqs].sort((a, b) => a - b));
    expect(events.find((e) => e.data && (e.data as { w: number }).w === 1)?.headers.traceparent).toMatch(/^00-1-/);
  });

  it("orders a partition by commit order, not by append order", async () => {
    await createStream(db.sql, "s", 8); // else the second writer waits on the first's stream creation
    const first = await db.sql.reserve();
    const second = await db.sql.reserve();
    try {
      await first`begin`;
      await second`begin`;
      await append(first, { stream: "s", key: "same", type: "AppendedFirst", data: 1 });
      await append(second, { stream: "s", key: "same", type: "AppendedSecond", data: 2 });
      await second`commit`;
      await first`commit`;
    } finally {
      first.release();
      second.release();
    }
    await waitForCount(db.sql, 2);
    const events = await readAll(db.sql, "s");
    expect(events.map((e) => [e.type, e.offset])).toEqual([["AppendedSecond", 0], ["AppendedFirst", 1]]);
  });

  it("keeps events of one transaction contiguous and in append order, with its commit time", async () => {
    const before = new Date();
    await db.sql.begin(async (tx) => {
      for (let i = 0; i < 20; i++) await append(tx, { stream: "one", key: "k", type: "Step", data: { i } });
    });
    await waitForCount(db.sql, 20);
    const events = await readAll(db.sql, "one");
    expect(events.map((e) => (e.data as { i: number }).i)).toEqual([...Array(20).keys()]);
    expect(new Set(events.map((e) => e.committed_at.getTime())).size).toBe(1);
    expect(events[0]!.committed_at.getTime()).toBeGreaterThanOrEqual(before.getTime() - 1000);
  });
});
