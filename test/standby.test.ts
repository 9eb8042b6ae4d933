/**
 * One active relay per slot (docs/ARCHITECTURE.md invariant 5) and fencing (invariant 4):
 * a standby takes over within seconds of kill -9 of the active relay, and a
 * relay that lost the lead cannot write what it had in hand.
 */
import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { appendBatch, createStream, partitionFor } from "@tributary/client";
import { RelayFencedError, startRelay, type Batch, type RelayHandle, type StreamRows } from "@tributary/relay";
import { Lsn } from "@tributary/wal";
import { SegmentTables, writeBatch } from "../services/relay/src/internal/stream-writer.ts";
import { CopyRows, timestampBinary } from "../services/relay/src/internal/binary-copy.ts";
import { createTestDatabase, describeBackends, type TestDatabase } from "./support/backends.ts";
import {
  AppendWorkload,
  RelayChildren,
  eventually,
  expectStreamMatchesLedger,
  readCheckpoint,
  relayBackends,
  slotPosition,
  terminate,
  type CheckpointRow,
  type RelayChild,
} from "./support/processes.ts";
import { assertDense, countEvents, readAll, waitForCount } from "./support/streams.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let children: RelayChildren;
beforeAll(async () => {
  children = await RelayChildren.build();
});
afterAll(async () => {
  await children?.dispose();
});

/** A batch as the relay would build it: events numbered from the given offsets, ending at `position`. */
function copyRowsOf(events: Array<{ stream: string; partition: number; offset: number; key: string }>): Buffer[] {
  const rows = new CopyRows();
  const committedAt = timestampBinary(BigInt(Date.now()) * 1000n);
  for (const e of events) {
    rows.row(10).text(e.stream).int4(e.partition).int8(e.offset)
      .uuid(randomUUID()).text(e.key).text("Zombie")
      .jsonb("{}").jsonb("{}").bytes(committedAt)
      .int4(0); // segment 0: the stream's only one
  }
  return rows.chunks();
}

/** Thrown to roll a test's transaction back. */
class RollBack extends Error {}

function batchOf(events: Array<{ stream: string; partition: number; offset: number; key: string }>, checkpoint: CheckpointRow): Batch {
  return {
    rows: [...new Set(events.map((e) => e.stream))].map((stream): StreamRows => ({
      stream, segment: 0, chunks: copyRowsOf(events.filter((e) => e.stream === stream)),
    })),
    rolls: [],
    size: events.length,
    rejects: [],
    first: null,
    last: null,
    captures: { starts: [], stops: [], touched: new Map(), snapshots: [] },
    offsets: events.map((e) => ({ stream: e.stream, partition: e.partition, nextOffset: String(e.offset + 1) })),
    position: {
      commitLsn: Lsn.parse(checkpoint.commitLsn),
      endLsn: Lsn.parse(checkpoint.endLsn),
      partialCommitLsn: checkpoint.partialCommitLsn === null ? null : Lsn.parse(checkpoint.partialCommitLsn),
      partialEvents: checkpoint.partialEvents,
    },
    transactions: 1,
  };
}

describeBackends("standby", (backend) => {
  let db: TestDatabase | null = null;
  let workload: AppendWorkload | null = null;
  const relays: RelayHandle[] = [];
  let openGate: () => void = () => {};

  afterEach(async () => {
    openGate();
    await children.killAll();
    await workload?.stop().catch(() => undefined);
    workload = null;
    await Promise.all(relays.splice(0).map((r) => r.stop()));
    if (db) {
      // The slot of a killed relay is released when its walsender notices; only then can the database go.
      await eventually("the slot to be released", async () => !(await slotPosition(db!.sql, db!.slotName)).active, 10_000).catch(() => undefined);
      await db.drop();
    }
    db = null;
  });

  /** Waits until one of `candidates` leads, and checks that only one does. */
  async function theOneActive(candidates: RelayChild[]): Promise<RelayChild> {
    const total = () => candidates.reduce((n, c) => n + c.activations, 0);
    await eventually("a relay to lead", () => total() > 0);
    await sleep(1500); // time enough for a second relay to (wrongly) lead too: standbys poll every 200 ms
    expect(total(), candidates.map((c) => c.describe()).join("\n")).toBe(1);
    return candidates.find((c) => c.activations > 0)!;
  }

  it("a standby takes over within 10 s of kill -9 of the active relay, and the stream stays exact", async () => {
    db = await createTestDatabase(backend);
    await createStream(db.sql, "orders", 4);
    workload = await AppendWorkload.start(db.sql, db.url, {
      writers: 2, streams: ["orders"], sizes: [1, 30, 4, 12], rollbackEvery: 5, pauseMs: 20,
    });
    const options = { databaseUrl: db.url, slotName: db.slotName, maxBatchEvents: 50 };
    const started = [children.start(options), children.start(options)];
    let active = await theOneActive(started);
    for (let round = 1; round <= 2; round++) {
      const standby = started.find((c) => c !== active && c.alive)!;
      await eventually("the other relay to wait as a standby", () => /standby/.test(standby.log()));
      expect(standby.activations, standby.describe()).toBe(0);
      await waitForCount(db.sql, (await countEvents(db.sql)) + 50, 20_000); // the active relay streams
      const before = await readCheckpoint(db.sql, db.slotName);

      const killedAt = Date.now();
      await active.kill();
      await standby.waitActive(1, 10_000);
      const tookLead = Date.now() - killedAt;
      // It does not just hold the lock: it writes, under its own relay id.
      await eventually("the new leader to write a batch", async () => (await readCheckpoint(db!.sql, db!.slotName)).relayId !== before.relayId, 10_000);
      const firstWrite = Date.now() - killedAt;
      expect(tookLead, "ms from kill -9 to the standby leading").toBeLessThan(10_000);
      expect(firstWrite, "ms from kill -9 to the standby's first write").toBeLessThan(10_000);
      console.info(`[${backend.name}] takeover ${round}: leading after ${tookLead} ms, writing after ${firstWrite} ms`);
      active = standby;
      if (round === 1) started.push(children.start(options)); // a fresh standby for the next round
    }
    const report = await workload.stop();
    workload = null;
    const [ledger] = await db.sql<{ n: string }[]>`select count(*)::text as n from test_ledger`;
    await waitForCount(db.sql, Number(ledger!.n), 60_000);
    await sleep(500);
    await expectStreamMatchesLedger(db.sql, report);
    expect(active.alive, active.describe()).toBe(true);
    expect(started.filter((c) => c.alive && c.activations > 0).map((c) => c.pid), "exactly one live leader").toEqual([active.pid]);
  });

  it("a relay that lost the lead while holding a batch never writes it; the new leader's stream stays exact", async () => {
    db = await createTestDatabase(backend);
    await createStream(db.sql, "orders", 4);
    // One transaction, so relay A reads it as a single batch and then waits on nothing else.
    const first = await db.sql.begin((tx) =>
      appendBatch(tx, Array.from({ length: 12 }, (_, i) => ({ stream: "orders", key: `k${i % 3}`, type: "First", data: { i } }))));

    const gate = new Promise<void>((resolve) => (openGate = resolve));
    let held: Batch | null = null;
    let heldCommitted = false;
    const logA: string[] = [];
    relays.push(startRelay({
      databaseUrl: db.url, slotName: db.slotName, relayId: "relay-A", maxBatchEvents: 1000, log: (m) => logA.push(m),
      hooks: {
        beforeWrite: async (batch) => {
          if (held) return;
          held = batch;
          await gate;
        },
        afterCommit: (batch) => {
          if (batch === held) heldCommitted = true;
        },
      },
    }));
    await eventually("relay A to hold its first batch", () => held !== null);
    expect(held!.size).toBe(12);

    const logB: string[] = [];
    let activeB = 0;
    relays.push(startRelay({
      databaseUrl: db.url, slotName: db.slotName, relayId: "relay-B", standbyPollMs: 100, log: (m) => logB.push(m),
      onActive: () => activeB++,
    }));
    await eventually("relay B to wait as a standby", () => logB.some((m) => /standby/.test(m)));
    expect(activeB).toBe(0);
    expect(await countEvents(db.sql)).toBe(0);

    // Cut A off: its walsender goes, its session ends and its lock with it.
    // (A's lock connection is not terminated directly: with postgres.js 3.4.9
    // that crashes an in-process relay, see faults.test.ts.)
    const a = await relayBackends(db.sql, db.slotName);
    expect(a.walsender).not.toBeNull();
    expect(a.lockHolder).not.toBeNull();
    await terminate(db.sql, [a.walsender]);
    await eventually("relay B to take the lead", () => activeB > 0, 15_000);
    await waitForCount(db.sql, 12, 15_000);
    expect((await readCheckpoint(db.sql, db.slotName)).relayId).toBe("relay-B");

    // A wakes up with its stale batch: it must not land.
    openGate();
    await sleep(1500);
    expect(heldCommitted, `relay A wrote its stale batch; its log:\n${logA.join("\n")}`).toBe(false);

    const second = await db.sql.begin((tx) =>
      appendBatch(tx, Array.from({ length: 5 }, (_, i) => ({ stream: "orders", key: `k${i % 3}`, type: "Second", data: { i } }))));
    await waitForCount(db.sql, 17, 15_000);
    await sleep(500);
    const events = await readAll(db.sql);
    expect(events.map((e) => e.id).sort()).toEqual([...first, ...second].sort());
    assertDense(events);
    for (const e of events) expect(e.partition).toBe(partitionFor(e.key, 4));
    // Per key, First events come before Second ones and keep their append order.
    const appended = new Map([...first, ...second].map((id, i) => [id, i]));
    for (const key of ["k0", "k1", "k2"]) {
      const order = events.filter((e) => e.key === key).map((e) => appended.get(e.id)!);
      expect(order, key).toEqual([...order].sort((x, y) => x - y));
    }
    const checkpoint = await readCheckpoint(db.sql, db.slotName);
    expect(checkpoint.relayId).toBe("relay-B");
    expect(heldCommitted).toBe(false);
    expect(logA.some((m) => /standby/.test(m)), `relay A should wait as a standby; its log:\n${logA.join("\n")}`).toBe(true);
  });

  // The checkpoint write does not depend on the decoder: these run once per
  // server (with pgoutput), not once per decoder.
  const oncePerServer = backend.decoder === "pgoutput" ? it : () => {};

  /** A database whose relay wrote one event of stream 'orders' (4 partitions) and stopped, with its checkpoint. */
  async function relayOneEvent() {
    const database = await createTestDatabase(backend);
    db = database; // dropped after the test
    await createStream(database.sql, "orders", 4);
    await database.sql.begin((tx) => appendBatch(tx, [{ stream: "orders", key: "k", type: "T", data: 1 }]));
    const relay = startRelay({ databaseUrl: database.url, slotName: database.slotName, log: () => {} });
    relays.push(relay);
    await waitForCount(database.sql, 1);
    await relay.stop();
    return { database, current: await readCheckpoint(database.sql, database.slotName) };
  }

  oncePerServer("writeBatch with a stale checkpoint version throws RelayFencedError and writes nothing", async () => {
    const relayed = await relayOneEvent();
    db = relayed.database;
    const current = relayed.current;
    expect(current.version).toBeGreaterThan(0);

    const snapshot = async () => ({
      events: await readAll(db!.sql),
      offsets: [...await db!.sql`select stream, partition, next_offset::text from tributary.partition_offsets order by 1, 2`],
      checkpoint: await readCheckpoint(db!.sql, db!.slotName),
    });
    await db.sql`select tributary.create_stream('fenced', 1)`; // its table (migration 0010)
    const before = await snapshot();
    const fresh = batchOf([{ stream: "fenced", partition: 0, offset: 0, key: "z" }], current);
    const stale = BigInt(current.version - 1);
    const error = await writeBatch(db.sql, new SegmentTables(), db.slotName, "relay-zombie", fresh, stale, 10_000).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(RelayFencedError);
    expect((error as Error).message).toMatch(/fenced/);
    expect(await snapshot()).toEqual(before);

    // The same batch with the current version goes in: the version alone decided.
    await expect(writeBatch(db.sql, new SegmentTables(), db.slotName, "relay-current", fresh, BigInt(current.version), 10_000)).resolves.toBe(BigInt(current.version + 1));
    expect((await readAll(db.sql, "fenced")).length).toBe(1);
  });

  oncePerServer("a zombie batch that re-numbers events the new leader already wrote is fenced by the checkpoint, not by a key clash", async () => {
    const relayed = await relayOneEvent();
    db = relayed.database;
    const current = relayed.current;
    const [written] = await readAll(db.sql);
    const before = await readAll(db.sql);
    // What a zombie holds: the same event numbered at the same offset, from the checkpoint before the leader's write.
    const zombie = batchOf([{ stream: "orders", partition: written!.partition, offset: written!.offset, key: "k" }], current);
    const error = await writeBatch(db.sql, new SegmentTables(), db.slotName, "relay-zombie", zombie, BigInt(current.version - 1), 10_000).then(() => null, (e: unknown) => e);
    expect(await readAll(db.sql)).toEqual(before);
    expect(await readCheckpoint(db.sql, db.slotName)).toEqual(current);
    expect(error, `expected the fence to stop the zombie, got: ${(error as Error)?.message}`).toBeInstanceOf(RelayFencedError);
  });

  oncePerServer("a fenced batch runs nothing sent behind its compare-and-set: it waits on no row the new leader holds uncommitted", async () => {
    db = await createTestDatabase(backend);
    await createStream(db.sql, "orders", 4);
    await createStream(db.sql, "payments", 1);
    await db.sql.begin((tx) => appendBatch(tx, [{ stream: "orders", key: "k", type: "T", data: 1 }]));
    const relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
    relays.push(relay);
    await waitForCount(db.sql, 1);
    await relay.stop();
    const current = await readCheckpoint(db.sql, db.slotName);
    const [written] = await readAll(db.sql);
    const before = await readAll(db.sql);
    // The new leader's next batch, still open: it holds the partition's next offset, uncommitted.
    const next = { stream: "orders", partition: written!.partition, offset: written!.offset + 1, key: "k" };
    // The stale relay numbered the same offset, in a batch of two streams (its COPYs go out one behind the other).
    const zombie = batchOf([{ stream: "payments", partition: 0, offset: 0, key: "p" }, next], current);
    let outcome: unknown = "the leader's transaction did not run";
    await db.sql.begin(async (leader) => {
      await leader`
        insert into tributary.events (stream, partition, "offset", id, key, type, data, headers, committed_at, segment)
        values (${next.stream}, ${next.partition}, ${next.offset}, ${randomUUID()}, 'k', 'T', '1', '{}', now(), 0)`;
      // Were the zombie's COPY of that offset run, it would wait on this transaction until its deadline.
      outcome = await writeBatch(db!.sql, new SegmentTables(), db!.slotName, "relay-zombie", zombie, BigInt(current.version - 1), 10_000).then(() => null, (e: unknown) => e);
      throw new RollBack();
    }).catch((e: unknown) => { if (!(e instanceof RollBack)) throw e; });
    expect(outcome, `expected the fence to stop the zombie at once, got: ${(outcome as Error)?.message}`).toBeInstanceOf(RelayFencedError);
    expect(await readAll(db.sql)).toEqual(before);
    expect(await readCheckpoint(db.sql, db.slotName)).toEqual(current);
  });
});
