/**
 * Table capture under kill -9 of the relay (docs/ARCHITECTURE.md invariants
 * 1-3 and 14), once per decoder: row changes, key changes, appended events
 * in the same transactions and snapshot reads all go through a replay that
 * skips what the checkpoint holds, and no event may be lost or doubled.
 *
 * The truth about what committed is the writers' ledger table
 * (support/capture-workload.ts): each transaction writes there what it did,
 * so the ledger holds exactly the committed changes, in commit order per key.
 *
 * Kills land at each hook of a batch (before its write, after its commit,
 * after its acknowledgement), at the next relay session after a capture
 * started, and inside a batch's transaction: the test holds the capture's
 * row of tributary.table_captures, which a batch with changes updates last
 * (stream-writer.ts), so the write waits there with its events copied and
 * its checkpoint moved, uncommitted, while the relay is killed.
 */
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import pg from "pg";
import type { Sql } from "postgres";
import { backends, createTestDatabase, describeBackends, type TestDatabase } from "./support/backends.ts";
import {
  CaptureWorkload,
  envelope,
  expectChangesMatchLedger,
  prepareCapturedTable,
  type CaptureWorkloadOptions,
} from "./support/capture-workload.ts";
import { RelayChildren, eventually, readCheckpoint, slotPosition, type CrashPoint, type RelayChild } from "./support/processes.ts";
import { readAll, waitForCount } from "./support/streams.ts";
import { Lsn } from "@tributary/wal";

let children: RelayChildren;
beforeAll(async () => {
  children = await RelayChildren.build();
});
afterAll(async () => {
  await children?.dispose();
});

const range = (from: number, to: number, step = 1) => Array.from({ length: Math.floor((to - from) / step) + 1 }, (_, i) => from + i * step);

async function captureRow(sql: Sql): Promise<{ id: string; state: string; rowsDone: number; cursor: string[] | null }> {
  const [row] = await sql<{ id: string; state: string; rows_done: string; cursor: string[] | null }[]>`
    select c.capture_id::text as id, c.state, c.rows_done::text, t.snapshot_cursor as cursor
      from tributary.captures c join tributary.table_captures t on t.id = c.capture_id
     where c."table" = 'public.accounts'`;
  if (!row) throw new Error("public.accounts is not captured");
  return { id: row.id, state: row.state, rowsDone: Number(row.rows_done), cursor: row.cursor };
}

/**
 * kill -9 of `child` while one of its batches is inside its database
 * transaction: the capture's row is held, the batch's last statement waits on
 * it, the child is killed, the row released. The killed write never sent its
 * COMMIT: the checkpoint must not have moved.
 */
async function killMidWrite(db: TestDatabase, child: RelayChild, captureId: string): Promise<void> {
  const holder = new pg.Client({ connectionString: db.url, application_name: "test-holder" });
  await holder.connect();
  try {
    await holder.query("begin");
    await holder.query("select 1 from tributary.table_captures where id = $1 for update", [captureId]);
    const { rows } = await holder.query<{ pid: number }>("select pg_backend_pid() as pid");
    const holderPid = rows[0]!.pid;
    let writer = 0;
    await eventually("a batch write waiting on the held capture row", async () => {
      if (!child.alive) throw new Error(`the relay died first: ${child.describe()}`);
      const [blocked] = await db.sql<{ pid: number }[]>`
        select pid from pg_stat_activity where application_name = 'tributary-relay' and ${holderPid}::int = any (pg_blocking_pids(pid))`;
      writer = blocked?.pid ?? 0;
      return writer !== 0;
    }, 30_000);
    const before = await readCheckpoint(db.sql, db.slotName);
    await child.kill();
    await holder.query("rollback");
    await eventually("the killed write's backend to end", async () => (await db.sql`select 1 from pg_stat_activity where pid = ${writer}`).length === 0, 30_000);
    const after = await readCheckpoint(db.sql, db.slotName);
    expect(after.version, "the batch killed inside its transaction left the checkpoint as it was").toBe(before.version);
  } finally {
    await holder.end().catch(() => undefined);
  }
}

describeBackends("table capture under kill -9", (backend) => {
  // Once per decoder, on its first leg (pg18 with pgoutput, pg15 with wal2json):
  // what a crash tests — replays skipped by commit LSN and entry count, chunk
  // watermarks — is the relay's and the decoder's, the same on either server
  // (pgoutput protocol 1 on both), and each leg costs about a minute of the
  // 2-core machine. capture.test.ts runs the contract on all three legs.
  const first = backends().find((b) => b.decoder === backend.decoder)!;
  if (first.name !== backend.name) {
    it.skip(`runs once per decoder, on ${first.name}`, () => {});
    return;
  }
  let db: TestDatabase | null = null;
  let workload: CaptureWorkload | null = null;

  afterEach(async () => {
    await children.killAll();
    await workload?.stop().catch(() => undefined);
    workload = null;
    if (db) {
      await eventually("the slot to be released", async () => !(await slotPosition(db!.sql, db!.slotName)).active, 10_000).catch(() => undefined);
      await db.drop();
    }
    db = null;
  });

  /** Waits until the relay passed every commit so far: a marker appended now is in the stream. */
  async function caughtUp(database: TestDatabase, child: RelayChild): Promise<void> {
    const before = (await readAll(database.sql, "marker")).length;
    await database.sql`select tributary.append('marker', 'm', 'marker', '{}')`;
    await eventually("the relay to pass the marker", async () => {
      if (!child.alive) throw new Error(`the relay died: ${child.describe()}`);
      return (await readAll(database.sql, "marker")).length > before;
    }, 120_000);
  }

  it("streams exactly the committed changes across kill -9 at every point of a batch", async () => {
    db = await createTestDatabase(backend);
    const keys = range(1, 90);
    await prepareCapturedTable(db.sql, { initialRows: 0, keys });
    // Batches of 20 entries: bulk transactions (25 rows and their appends) and key changes are cut across batches.
    const relay = { databaseUrl: db.url, slotName: db.slotName, maxBatchEvents: 20 };
    const options: CaptureWorkloadOptions = { writers: 3, keys, rollbackEvery: 5, bulkEvery: 6, bulkKeys: 25, pauseMs: 5 };

    // The capture starts while a relay runs (on wal2json its session restarts for it); that relay is then killed.
    const first = children.start(relay);
    await first.waitActive(1);
    await db.sql`select tributary.capture('accounts', '{"snapshot": "none", "partitions": 4}')`;
    workload = CaptureWorkload.start(db.url, options);
    await waitForCount(db.sql, 100, 60_000);
    await first.kill();

    const schedule: Array<[CrashPoint, number]> = [
      ["before-write", 1], ["after-commit", 1], ["after-ack", 1],
      ["before-write", 3], ["after-commit", 2], ["after-ack", 4],
      ["after-commit", 5], ["before-write", 2], ["after-ack", 2],
    ];
    let insideTransaction = 0;
    let beforeAck = 0;
    for (const [crashAt, batch] of schedule) {
      const before = await readCheckpoint(db.sql, db.slotName);
      const child = children.start({ ...relay, crashAt, crashAfterBatches: batch });
      const exit = await child.waitExit(60_000);
      expect(exit.signal, `${crashAt} #${batch}: ${child.describe()}`).toBe("SIGKILL");
      const after = await readCheckpoint(db.sql, db.slotName);
      // At least the chosen batch's predecessors are in; a position-only write may add versions.
      expect(after.version - before.version, `${crashAt} #${batch}`).toBeGreaterThanOrEqual(crashAt === "before-write" ? batch - 1 : batch);
      if (after.partialCommitLsn !== null) insideTransaction++;
      if (Lsn.parse((await slotPosition(db.sql, db.slotName)).confirmedFlushLsn) < Lsn.parse(after.endLsn)) beforeAck++;
    }
    const { id: captureId } = await captureRow(db.sql);
    for (let kill = 0; kill < 3; kill++) {
      const child = children.start(relay);
      await child.waitActive(1, 60_000);
      await killMidWrite(db, child, captureId);
    }
    const report = await workload.stop();
    workload = null;

    const clean = children.start({ databaseUrl: db.url, slotName: db.slotName });
    await caughtUp(db, clean);
    const events = await expectChangesMatchLedger(db.sql, report, { initialRows: 0 });
    // The run exercised what it claims: key changes, appends among the changes, partial transactions, replays.
    expect(report.keyChanges, "committed key changes").toBeGreaterThan(0);
    expect(events.filter((e) => e.type === "note.added").length).toBeGreaterThan(0);
    expect(insideTransaction, "crashes with a transaction partly in the stream").toBeGreaterThan(0);
    expect(beforeAck, "crashes that left written events unacknowledged").toBeGreaterThan(0);
    expect((await captureRow(db.sql)).state).toBe("streaming");
  });

  it("resumes a snapshot killed mid-way after its last chunk: no row read twice, none missing", async () => {
    db = await createTestDatabase(backend);
    const rows = 20_000;
    const chunkRows = 500;
    // The writers touch every 10th row (spread over every chunk) and new ids above the table's.
    const keys = [...range(10, rows, 10), ...range(rows + 1, rows + 400)];
    await prepareCapturedTable(db.sql, { initialRows: rows, keys });
    await db.sql`select tributary.capture('accounts', '{"partitions": 4}')`;
    // Half the transactions write just above the snapshot's cursor: inside the next chunk's window.
    let cursor: number | undefined;
    workload = CaptureWorkload.start(db.url, { writers: 3, keys, rollbackEvery: 5, bulkEvery: 10, bulkKeys: 15, pauseMs: 10, focus: () => cursor });
    const relay = { databaseUrl: db.url, slotName: db.slotName, maxBatchEvents: 100, snapshotChunkRows: chunkRows, snapshotPollMs: 100 };

    // rows_done, sampled while the relays come and go: it must never go back.
    const seen: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const now = await captureRow(db!.sql);
        seen.push(now.rowsDone);
        cursor = now.cursor ? Number(now.cursor[0]) : 0;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    const deaths: Array<{ rowsDone: number; cursor: string[] | null }> = [];
    let child = children.start(relay);
    for (const share of [0.2, 0.4, 0.6, 0.75]) {
      await eventually(`the snapshot to pass ${share * 100}%`, async () => {
        if (!child.alive) throw new Error(`the relay died: ${child.describe()}`);
        return (await captureRow(db!.sql)).rowsDone >= share * rows;
      }, 120_000);
      if (deaths.length % 2 === 0) await killMidWrite(db, child, (await captureRow(db.sql)).id);
      else await child.kill();
      const dead = await captureRow(db.sql);
      expect(dead.state, "killed mid-snapshot").toBe("snapshotting");
      deaths.push({ rowsDone: dead.rowsDone, cursor: dead.cursor });
      child = children.start(relay);
      // The new relay goes on from the cursor: its first chunk adds to rows_done, it does not start over.
      await eventually("the next relay to snapshot a chunk", async () => {
        if (!child.alive) throw new Error(`the relay died: ${child.describe()}`);
        const now = await captureRow(db!.sql);
        return now.rowsDone > dead.rowsDone || now.state === "streaming";
      }, 120_000);
    }
    await eventually("the snapshot to end", async () => (await captureRow(db!.sql)).state === "streaming", 120_000);
    sampling = false;
    await sampler;
    const report = await workload.stop();
    workload = null;
    await caughtUp(db, child);

    const backwards = seen.findIndex((n, i) => i > 0 && n < seen[i - 1]!);
    expect(backwards, `rows_done went back: ${seen.slice(Math.max(0, backwards - 3), backwards + 2)}`).toBe(-1);
    expect(deaths.every((d, i) => d.rowsDone > 0 && (i === 0 || d.rowsDone > deaths[i - 1]!.rowsDone)), JSON.stringify(deaths)).toBe(true);

    const events = await expectChangesMatchLedger(db.sql, report, { initialRows: rows });
    const reads = events.filter((e) => envelope(e).op === "r");
    // Every row the writers never touch was read exactly once (none twice: checked with the ledger).
    const hot = new Set(keys.map(String));
    const readKeys = new Set(reads.map((e) => e.key));
    const unread = range(1, rows).filter((id) => !hot.has(String(id)) && !readKeys.has(String(id)));
    expect(unread.length, `rows never read, the first ${unread.slice(0, 5)}`).toBe(0);
    // Chunks in the stream follow the cursor: each chunk's keys (one high watermark, one source.lsn) come after the previous chunk's.
    const chunks = new Map<number, number[]>();
    for (const e of reads) chunks.set(envelope(e).source.lsn, [...(chunks.get(envelope(e).source.lsn) ?? []), Number(e.key)]);
    const ordered = [...chunks].sort(([a], [b]) => a - b).map(([, ids]) => [Math.min(...ids), Math.max(...ids)] as const);
    const overlap = ordered.findIndex(([low], i) => i > 0 && low <= ordered[i - 1]![1]);
    expect(overlap, `a chunk at or before its predecessor: ${JSON.stringify(ordered.slice(Math.max(0, overlap - 1), overlap + 1))}`).toBe(-1);
    expect(ordered.length, "chunks").toBeGreaterThanOrEqual(rows / chunkRows / 2);
    const done = await captureRow(db.sql);
    expect(done.rowsDone, "rows_done counts each chunk once").toBeGreaterThanOrEqual(reads.length);
    expect(done.rowsDone).toBeLessThanOrEqual(rows + 400);
  });
});
