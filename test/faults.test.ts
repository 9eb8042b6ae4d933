/**
 * Exactly once under faults (docs/ARCHITECTURE.md invariants 1-4), on every backend:
 * kill -9 of the relay at each point of a batch, PostgreSQL restarts, dropped
 * connections, and a crash between the acknowledgements of two transactions
 * whose commit records touch in the WAL. The truth about what committed is
 * the writers' ledger table (see support/processes.ts), so a commit whose
 * outcome a crash hid is judged by the database, not guessed.
 */
import { afterAll, afterEach, beforeAll, expect, inject, it } from "vitest";
import postgres, { type Sql } from "postgres";
import { append, appendBatch, createStream } from "@tributary/client";
import { migrate } from "@tributary/migrate";
import { startRelay, type RelayHandle } from "@tributary/relay";
import { Cluster, findInstallation } from "@tributary/testkit";
import { Lsn } from "@tributary/wal";
import { createTestDatabase, describeBackends, type TestDatabase } from "./support/backends.ts";
import {
  AppendWorkload,
  RelayChildren,
  SupervisedRelay,
  eventually,
  expectStreamMatchesLedger,
  readCheckpoint,
  relayBackends,
  slotPosition,
  terminate,
  terminateRelayWriteInFlight,
  type CrashPoint,
  type RelayBackends,
} from "./support/processes.ts";
import { countEvents, readAll, waitForCount } from "./support/streams.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let children: RelayChildren;
beforeAll(async () => {
  children = await RelayChildren.build();
});
afterAll(async () => {
  await children?.dispose();
});

async function ledgerCount(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: string }[]>`select count(*)::text as n from test_ledger`;
  return Number(row!.n);
}

/** Waits until the stream holds `more` events beyond what it holds now. */
async function streamGrows(sql: Sql, more: number, timeoutMs = 20_000): Promise<void> {
  const from = await countEvents(sql);
  await waitForCount(sql, from + more, timeoutMs);
}

describeBackends("faults", (backend) => {
  let db: TestDatabase | null = null;
  let workload: AppendWorkload | null = null;
  const relays: RelayHandle[] = [];
  const supervisors: SupervisedRelay[] = [];
  const relayLog: string[] = [];

  /** A clean relay with the relay's default batch size: it catches up on what the crashes left. */
  const startInProcessRelay = (databaseUrl: string, slotName: string) => {
    const relay = startRelay({ databaseUrl, slotName, log: (m) => relayLog.push(m) });
    relays.push(relay);
    return relay;
  };

  afterEach(async () => {
    await Promise.all(supervisors.splice(0).map((s) => s.stop()));
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
    relayLog.length = 0;
  });

  it("stays exact across kill -9 of the relay before the write, after the commit and after the ack", async () => {
    db = await createTestDatabase(backend);
    await createStream(db.sql, "orders", 4);
    await createStream(db.sql, "payments", 3);
    // Sizes above 50 are cut into several batches, so crashes land inside transactions.
    workload = await AppendWorkload.start(db.sql, db.url, {
      writers: 3, streams: ["orders", "payments"], sizes: [1, 120, 3, 50, 75, 2, 51, 7], rollbackEvery: 4, pauseMs: 40,
    });
    const schedule: Array<[CrashPoint, number]> = [
      ["before-write", 1], ["after-commit", 1], ["after-ack", 1],
      ["before-write", 3], ["after-commit", 2], ["after-ack", 3],
      ["after-commit", 4], ["before-write", 2], ["after-ack", 5],
      // Only a crash after a commit that ended a transaction leaves the slot behind the checkpoint;
      // which batches end one depends on timing, so several such crashes make one of them likely.
      ["after-commit", 3], ["after-commit", 5], ["after-commit", 1],
    ];
    let crashesInsideTransaction = 0;
    let crashesBeforeAck = 0;
    for (const [crashAt, batch] of schedule) {
      const before = await readCheckpoint(db.sql, db.slotName);
      const child = children.start({ databaseUrl: db.url, slotName: db.slotName, maxBatchEvents: 50, crashAt, crashAfterBatches: batch });
      const exit = await child.waitExit(30_000);
      expect(exit.signal, `${crashAt} #${batch}: ${child.describe()}`).toBe("SIGKILL");
      const after = await readCheckpoint(db.sql, db.slotName);
      // The crash hit the chosen write: before-write leaves batch-1 committed writes, the others batch.
      expect(after.version - before.version, `${crashAt} #${batch}`).toBe(crashAt === "before-write" ? batch - 1 : batch);
      if (after.partialCommitLsn !== null) crashesInsideTransaction++;
      // Written but not acknowledged: the slot lags the stream, so the next relay
      // must resume from its checkpoint (and skip what it finds there), not from the slot.
      const slot = await slotPosition(db.sql, db.slotName);
      if (Lsn.parse(slot.confirmedFlushLsn) < Lsn.parse(after.endLsn)) crashesBeforeAck++;
    }
    const report = await workload.stop();
    workload = null;

    startInProcessRelay(db.url, db.slotName);
    await waitForCount(db.sql, await ledgerCount(db.sql), 60_000).catch((error: Error) => {
      throw new Error(`${error.message}; the clean relay's log:\n${relayLog.join("\n")}`);
    });
    await sleep(500); // nothing more may arrive
    await expectStreamMatchesLedger(db.sql, report);
    // The schedule exercised what it claims to: partial transactions and replays after a crash.
    expect(crashesInsideTransaction, "crashes with a transaction partly in the stream").toBeGreaterThan(0);
    expect(crashesBeforeAck, "crashes that left written events unacknowledged").toBeGreaterThan(0);
    // The test's own waits allow each of the 12 relays 30 s to crash and the clean one 60 s to
    // catch up: its timeout must cover them (the global 120 s did not on a loaded machine).
  }, 12 * 30_000 + 60_000 + 60_000);

  it("stays exact across PostgreSQL immediate and fast restarts while writers append", async (ctx) => {
    const server = inject("servers").find((s) => s.url === backend.serverUrl);
    if (!server || server.kind === "external") {
      ctx.skip("restart tests start their own throwaway cluster; unset TRIBUTARY_TEST_DATABASE_URL to run them");
      return;
    }
    const installation = findInstallation(server.kind);
    if ("missing" in installation) throw new Error(installation.missing);
    const cluster = await Cluster.start(installation);
    let sql: Sql | null = null;
    try {
      const admin = postgres(cluster.url, { max: 1, onnotice: () => {} });
      await admin`create database faults`;
      await admin.end();
      const url = cluster.urlFor("faults");
      sql = postgres(url, { max: 4, onnotice: () => {} });
      const slotName = "tributary_faults";
      await migrate(sql, { slotName, decoder: backend.decoder });
      await createStream(sql, "orders", 4);
      workload = await AppendWorkload.start(sql, url, {
        writers: 3, streams: ["orders"], sizes: [1, 80, 4, 20], rollbackEvery: 5, pauseMs: 20, tolerateErrors: true,
      });
      const relay = new SupervisedRelay(children, { databaseUrl: url, slotName, maxBatchEvents: 50 });
      supervisors.push(relay);

      for (const mode of ["immediate", "fast", "immediate"] as const) {
        await streamGrows(sql, 200, 60_000);
        await cluster.restart(mode);
      }
      await streamGrows(sql, 200, 60_000); // writers and relay are back
      const report = await workload.stop();
      workload = null;
      await waitForCount(sql, await ledgerCount(sql), 60_000);
      await sleep(500);
      await expectStreamMatchesLedger(sql, report);
      expect(report.errors, "the writers saw the restarts").toBeGreaterThan(0);
      // The relay rides out restarts by reconnecting; it must not die of them.
      expect(relay.deaths.length, `the relay process died during restarts:\n${relay.describeDeaths()}`).toBe(0);
    } finally {
      await workload?.stop().catch(() => undefined);
      workload = null;
      await Promise.all(supervisors.splice(0).map((s) => s.stop()));
      await sql?.end({ timeout: 1 });
      await cluster.destroy();
    }
  });

  /** Streams with a supervised relay child, dropping connections between bursts; then the stream must be exact. */
  async function dropConnectionsWhileStreaming(drop: (backends: RelayBackends) => Promise<void>, rounds: number, expectNewSession: boolean) {
    db = await createTestDatabase(backend);
    await createStream(db.sql, "orders", 4);
    workload = await AppendWorkload.start(db.sql, db.url, {
      writers: 2, streams: ["orders"], sizes: [1, 60, 3, 9], rollbackEvery: 5, pauseMs: 10,
    });
    const relay = new SupervisedRelay(children, { databaseUrl: db.url, slotName: db.slotName, maxBatchEvents: 20 });
    supervisors.push(relay);
    await relay.current.waitActive(1);
    for (let round = 0; round < rounds; round++) {
      await streamGrows(db.sql, 50);
      const backends = await relayBackends(db.sql, db.slotName);
      expect(backends.walsender, "a walsender streams").not.toBeNull();
      const activations = relay.activations;
      await drop(backends);
      if (expectNewSession) {
        // A new session: it leads again and streams from a new walsender.
        await eventually("the relay to lead again", () => relay.activations > activations);
        await eventually("a new walsender on the slot", async () => {
          const slot = await slotPosition(db!.sql, db!.slotName);
          return slot.activePid !== null && slot.activePid !== backends.walsender;
        });
      }
      await streamGrows(db.sql, 50);
    }
    const report = await workload.stop();
    workload = null;
    await waitForCount(db.sql, await ledgerCount(db.sql), 60_000);
    await sleep(500);
    await expectStreamMatchesLedger(db.sql, report);
    // Reconnecting is the relay's job: a supervisor restarting a dead relay is not the contract.
    expect(relay.deaths.length, `the relay process died instead of reconnecting:\n${relay.describeDeaths()}`).toBe(0);
  }

  it("reconnects by itself when its walsender is terminated", async () => {
    await dropConnectionsWhileStreaming((b) => terminate(db!.sql, [b.walsender]), 4, true);
  });

  it("reconnects by itself when the connection a batch is being written on drops mid-transaction", async () => {
    // The write fails, the session restarts from the checkpoint the database holds.
    await dropConnectionsWhileStreaming(async () => void (await terminateRelayWriteInFlight(db!.sql)), 4, true);
  });

  // The lock and its watchdog do not depend on the decoder: this runs once per
  // server (with pgoutput), not once per decoder.
  const oncePerServer = backend.decoder === "pgoutput" ? it : () => {};
  oncePerServer("gives up the lead and takes it again when only its lock connection is terminated", async () => {
    db = await createTestDatabase(backend);
    await createStream(db.sql, "orders", 4);
    workload = await AppendWorkload.start(db.sql, db.url, {
      writers: 2, streams: ["orders"], sizes: [1, 60, 3, 9], rollbackEvery: 5, pauseMs: 20,
    });
    const child = children.start({ databaseUrl: db.url, slotName: db.slotName, maxBatchEvents: 50 });
    await child.waitActive(1);
    await streamGrows(db.sql, 50);
    const backends = await relayBackends(db.sql, db.slotName);
    expect(backends.lockHolder).not.toBeNull();
    // Without its lock another relay may lead: the relay must notice (it checks
    // the lock connection every 2 s), stop streaming, and lead again.
    await terminate(db.sql, [backends.lockHolder]);
    await eventually("the relay to notice it lost its lock and lead again", () => {
      if (!child.alive) throw new Error(`the relay died instead: ${child.describe()}`);
      return child.activations >= 2;
    }, 10_000);
    await eventually("the relay to hold its lock again", async () => (await relayBackends(db!.sql, db!.slotName)).lockHolder !== null);
    await streamGrows(db.sql, 50);
    const report = await workload.stop();
    workload = null;
    await waitForCount(db.sql, await ledgerCount(db.sql), 60_000);
    await sleep(500);
    await expectStreamMatchesLedger(db.sql, report);
    expect(child.alive, child.describe()).toBe(true);
  });

  it("keeps the next transaction when the relay dies right after acknowledging the previous one, their commit records adjacent", async () => {
    // The cluster's WAL is shared with tests running in parallel: a record of
    // another database can land between the two commits. Then the setup is
    // not the case under test; set it up again (the check below stays strict).
    // Idle relays of other test databases write their position every few
    // seconds, so such records are common: up to 10 set-ups.
    let idA = "";
    let idsB: string[] = [];
    let checkpoint!: Awaited<ReturnType<typeof readCheckpoint>>;
    for (let setup = 1; setup <= 10; setup++) {
      if (setup > 1) await db!.drop();
      db = await createTestDatabase(backend);
      await createStream(db.sql, "adjacent", 1);
      // Both transactions append before either commits, so their commit records are
      // written back to back: B's commit record starts where A's ends.
      const a = await db.sql.reserve();
      const b = await db.sql.reserve();
      try {
        await a`begin`;
        await b`begin`;
        idA = await append(a, { stream: "adjacent", key: "k", type: "A", data: 0 });
        idsB = await appendBatch(b, [
          { stream: "adjacent", key: "k", type: "B1", data: 1 },
          { stream: "adjacent", key: "k", type: "B2", data: 2 },
        ]);
        await a`commit`;
        await b`commit`;
      } finally {
        a.release();
        b.release();
      }
      // One event per batch: batch 1 = A's event, batch 2 = B's first event, whose
      // checkpoint completes A (end_lsn = A's commit end) and records B as partial.
      // The child acknowledges that end_lsn, then dies before B's second event.
      const crashing = children.start({ databaseUrl: db.url, slotName: db.slotName, maxBatchEvents: 1, crashAt: "after-ack", crashAfterBatches: 2 });
      const exit = await crashing.waitExit(30_000);
      expect(exit.signal, crashing.describe()).toBe("SIGKILL");
      checkpoint = await readCheckpoint(db.sql, db.slotName);
      expect(checkpoint).toMatchObject({ version: 2, partialEvents: 1 });
      if (checkpoint.partialCommitLsn === checkpoint.endLsn) break;
    }
    if (!db) throw new Error("no database was set up");
    expect(checkpoint.partialCommitLsn, "B's commit record starts where A's ends (adjacent in the WAL)").toBe(checkpoint.endLsn);
    // Invariant 4: acknowledged exactly to A's commit end, not one byte into B.
    await eventually("the dead relay's walsender to exit", async () => !(await slotPosition(db!.sql, db!.slotName)).active);
    expect((await slotPosition(db.sql, db.slotName)).confirmedFlushLsn).toBe(checkpoint.endLsn);
    expect((await readAll(db.sql)).map((e) => e.type)).toEqual(["A", "B1"]);

    const clean = children.start({ databaseUrl: db.url, slotName: db.slotName, maxBatchEvents: 1 });
    await clean.waitActive(1);
    await waitForCount(db.sql, 3);
    await sleep(500);
    const events = await readAll(db.sql);
    expect(events.map((e) => [e.type, e.offset, e.id])).toEqual([["A", 0, idA], ["B1", 1, idsB[0]], ["B2", 2, idsB[1]]]);
    // A further replay of B is skipped: the checkpoint covers B whole (as completed, or as partial with both events).
    const after = await readCheckpoint(db.sql, db.slotName);
    const coversB = after.commitLsn === checkpoint.partialCommitLsn || (after.partialCommitLsn === checkpoint.partialCommitLsn && after.partialEvents === 2);
    expect(coversB, JSON.stringify(after)).toBe(true);
  });
});

