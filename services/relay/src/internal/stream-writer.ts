/**
 * Writes one batch into the stream table, its partitions' next offsets, the
 * messages it set aside and the relay checkpoint, in one PostgreSQL
 * transaction (docs/ARCHITECTURE.md invariants 1, 2, 4, 13). The checkpoint
 * is compare-and-set on its version: a relay whose version is stale (another
 * relay wrote since) is fenced and writes nothing.
 *
 * Every error of the write surfaces (invariant 13). postgres.js 3.4.9's COPY
 * writable never settles when the server refuses a row after the last chunk
 * was sent (porsager/postgres#1173): the server's error reaches only the COPY
 * query's reject(), which is a no-op once the query resolved to the stream.
 * So we listen there too, and a deadline covers anything else that could
 * leave the write hanging.
 *
 * Each stream's rows are copied straight into its current segment's table
 * (migration 0010), not into tributary.events: routing a row through the two
 * partition levels costs the server more than the row's constraint check on
 * the segment itself (docs/ARCHITECTURE.md, "Storage segments and
 * retention"). SegmentTables knows the tables by name.
 *
 * Round trips: a batch's write waits on the server once per round trip, and
 * while the pump decodes the next batch each answer also waits for its turn
 * of the event loop (pump.ts, Turns). postgres.js frees the connection for
 * the next query as soon as a COPY's CopyDone is on the socket, so each
 * stream's COPY goes out behind the previous one's CopyDone, and the
 * partitions' next offsets (one statement, with the wake-up of LISTENing
 * readers) behind the last, none of them waiting for the answer before: a
 * batch of n streams waits n + 1 times, not 2n. The server answers in order;
 * an error aborts the transaction, so what was sent behind it is refused
 * (25P02) and the first error is the one reported.
 *
 * That needs one thing of postgres.js's COPY writable: Node destroys a
 * writable once it finished (autoDestroy), and postgres.js's destroy sends
 * CopyFail, even after CopyDone. PostgreSQL ignores a CopyFail outside a
 * COPY, but the next COPY is open by then and would fail ("COPY from stdin
 * failed: null"). So once CopyDone is sent, sendCopy's writable is destroyed
 * without a message: after CopyDone the protocol has nothing left to say.
 */
import type { Sql, TransactionSql } from "postgres";
import { transaction } from "@tributary/client";
import { EVENTS_CHANNEL } from "@tributary/core";
import { Lsn } from "@tributary/wal";
import type { Batch, CaptureProgress, StreamRows } from "./relay-state.ts";
import { BatchWriteTimeoutError, RelayFencedError } from "./errors.ts";

/**
 * The tables the relay copies rows into: each (stream, segment)'s, as
 * tributary.segments names it, quoted by the server, looked up once. A stream
 * the catalog does not know (no segment of that number) is copied into
 * tributary.events, whose refusal ("no partition of relation found") sets its
 * events aside as before (invariant 13). A segment the relay writes is its
 * stream's current one, which retention never drops.
 */
export class SegmentTables {
  private readonly known = new Map<string, string>();

  /**
   * The quoted table of each of `rows`, in order; the unknown ones looked up
   * in `tx`. A stream created in the transaction of its first append may not
   * be visible yet when its commit is decoded: PostgreSQL sends a commit once
   * its WAL is flushed, a moment before other sessions see it. So a miss is
   * looked up again, for up to about a second, before the row goes to
   * tributary.events (which would refuse it for the same reason and set the
   * event aside for good).
   */
  async of(tx: TransactionSql, rows: readonly StreamRows[]): Promise<string[]> {
    for (let attempt = 0, waitMs = 5; ; attempt++, waitMs *= 2) {
      const missing = rows.filter((r) => !this.known.has(segmentKey(r)));
      if (missing.length === 0 || attempt === LOOKUPS) break;
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
      const found = await tx<{ stream: string; segment: number; target: string }[]>`
        select g.stream, g.segment, format('tributary.%I', g.table_name) as target
          from tributary.segments g
          join unnest(${missing.map((r) => r.stream)}::text[], ${missing.map((r) => r.segment)}::int[]) as m(stream, segment)
            on g.stream = m.stream and g.segment = m.segment`;
      for (const f of found) this.known.set(segmentKey(f), f.target);
    }
    return rows.map((r) => this.known.get(segmentKey(r)) ?? "tributary.events");
  }
}

/** Lookups of a missing segment: waits of 10, 20, … 640 ms between them, about 1.3 s in all. */
const LOOKUPS = 8;

const segmentKey = (r: { stream: string; segment: number }): string => `${r.segment}\u0000${r.stream}`;

export async function writeBatch(sql: Sql, tables: SegmentTables, slotName: string, relayId: string, batch: Batch, expectedVersion: bigint, timeoutMs: number): Promise<bigint> {
  // transaction, not sql.begin: a writer backend terminated mid-batch (a takeover) must not take the process down.
  const write = transaction(sql, (tx) => writeInTransaction(tx, tables, slotName, relayId, batch, expectedVersion));
  return withDeadline(write, timeoutMs, `a batch write of ${batch.size} events and ${batch.rejects.length} set-aside messages`);
}

async function writeInTransaction(tx: TransactionSql, tables: SegmentTables, slotName: string, relayId: string, batch: Batch, expectedVersion: bigint): Promise<bigint> {
  // The compare-and-set comes first, and what follows goes out behind it
  // without waiting for its answer: a fenced relay's compare-and-set fails
  // (advanceCheckpoint), so the server refuses everything sent behind it and
  // the relay writes nothing that could collide with (or wait on) the rows
  // of the relay that replaced it.
  const advanced = advanceCheckpoint(tx, slotName, relayId, batch.position, expectedVersion);
  advanced.catch(() => undefined); // read below, in sending order
  try {
    await writeBatchRows(tx, tables, slotName, batch);
  } catch (error) {
    await advanced; // sent first, answered first: fenced is the error then, not the 25P02 of what followed
    throw error;
  }
  return advanced;
}

/**
 * The checkpoint's compare-and-set on its version (docs/ARCHITECTURE.md
 * invariant 4). A stale version is an error on the server, not an update of
 * no row: the new version is computed as NULL, which the column refuses
 * (not-null violation), and the transaction is aborted before anything sent
 * behind it runs. Under a concurrent takeover the UPDATE waits on the row
 * lock of the other relay's batch and then sees its version, as before.
 */
async function advanceCheckpoint(tx: TransactionSql, slotName: string, relayId: string, position: Batch["position"], expectedVersion: bigint): Promise<bigint> {
  let updated: { version: string }[] = [];
  try {
    updated = await tx<{ version: string }[]>`
      update tributary.relay_checkpoints
         set commit_lsn = ${Lsn.format(position.commitLsn)}::pg_lsn,
             end_lsn = ${Lsn.format(position.endLsn)}::pg_lsn,
             partial_commit_lsn = ${position.partialCommitLsn === null ? null : Lsn.format(position.partialCommitLsn)}::pg_lsn,
             partial_events = ${position.partialEvents},
             version = case when version = ${expectedVersion.toString()}::bigint then version + 1 end,
             relay_id = ${relayId},
             updated_at = now()
       where slot_name = ${slotName}
       returning version::text`;
  } catch (error) {
    if (!isStaleVersion(error)) throw error;
  }
  if (updated.length !== 1) {
    throw new RelayFencedError(
      `relay ${relayId} was fenced: the checkpoint of slot '${slotName}' moved past version ${expectedVersion} ` +
        `(another relay took over). This relay's batch was rolled back.`,
    );
  }
  return BigInt(updated[0]!.version);
}

function isStaleVersion(error: unknown): boolean {
  const e = error as { code?: string; table_name?: string; column_name?: string } | null;
  return e?.code === "23502" && e.table_name === "relay_checkpoints" && e.column_name === "version";
}

/** The batch's rows, offsets, segments begun, set-aside messages and capture progress. */
async function writeBatchRows(tx: TransactionSql, tables: SegmentTables, slotName: string, batch: Batch): Promise<void> {
  const { rows } = batch;
  if (batch.size > 0) {
    const targets = await tables.of(tx, rows);
    const answers: Promise<unknown>[] = [];
    let sentAll = true;
    for (let i = 0; i < rows.length && sentAll; i++) {
      const statement = `copy ${targets[i]!} (stream, partition, "offset", id, key, type, data, headers, committed_at, segment) from stdin (format binary)`;
      const sent = sendCopy(tx, statement, rows[i]!.chunks);
      const answer = sent.then(({ answered }) => answered);
      answer.catch(() => undefined); // read in order below, once every statement is out
      answers.push(answer);
      // Refused before its data went out (by its table, or with 25P02 after an error of a COPY before it): nothing more is sent.
      sentAll = await sent.then(() => true, () => false);
    }
    // Behind the last CopyDone; one statement for the offsets and the wake-up of LISTENing readers.
    if (sentAll) answers.push(tx`
      with advanced as (
        insert into tributary.partition_offsets (stream, partition, next_offset)
        select * from unnest(${batch.offsets.map((o) => o.stream)}::text[],
                             ${batch.offsets.map((o) => o.partition)}::int[],
                             ${batch.offsets.map((o) => o.nextOffset)}::bigint[])
        on conflict (stream, partition) do update set next_offset = excluded.next_offset)
      select pg_notify(${EVENTS_CHANNEL}, ${slotName})`);
    await settledInOrder(answers);
  }
  if (batch.rolls.length > 0) {
    const r = batch.rolls;
    // first_offsets is NULL until begun: a segment begins once (a stale relay is fenced above).
    const begun = await tx`
      update tributary.segments g set first_offsets = v.first_offsets::bigint[], started_at = now()
        from unnest(${r.map((s) => s.stream)}::text[], ${r.map((s) => s.segment)}::int[], ${r.map((s) => `{${s.firstOffsets.join(",")}}`)}::text[])
             as v(stream, segment, first_offsets)
       where g.stream = v.stream and g.segment = v.segment and g.first_offsets is null`;
    if (begun.count !== r.length) {
      throw new Error(`began ${begun.count} of ${r.length} segments (${r.map((s) => `${s.stream}/${s.segment}`).join(", ")}): the others are missing or begun already`);
    }
  }
  if (batch.rejects.length > 0) {
    const r = batch.rejects;
    await tx`
      insert into tributary.rejected_messages (slot_name, lsn, commit_lsn, reason, detail, stream, event_id, raw)
      select ${slotName}, lsn, commit_lsn, reason, detail, stream, event_id, decode(raw_hex, 'hex') from unnest(${r.map((m) => Lsn.format(m.lsn))}::pg_lsn[],
                                        ${r.map((m) => Lsn.format(m.commitLsn))}::pg_lsn[],
                                        ${r.map((m) => m.reason)}::text[],
                                        ${r.map((m) => m.detail)}::text[],
                                        ${r.map((m) => m.stream)}::text[],
                                        ${r.map((m) => m.eventId)}::text[],
                                        ${r.map((m) => m.raw.toString("hex"))}::text[])
             as m(lsn, commit_lsn, reason, detail, stream, event_id, raw_hex)`;
  }
  await writeCaptureProgress(tx, batch.captures);
}

/** Table capture's bookkeeping (relay-state.ts CaptureProgress), with the events it goes with. */
async function writeCaptureProgress(tx: TransactionSql, progress: CaptureProgress): Promise<void> {
  const { starts, stops, touched, snapshots } = progress;
  if (starts.length > 0) {
    await tx`
      update tributary.table_captures t set start_lsn = v.lsn::pg_lsn
        from unnest(${starts.map((s) => s.id)}::bigint[], ${starts.map((s) => Lsn.format(s.lsn))}::text[]) as v(id, lsn)
       where t.id = v.id and t.start_lsn is null`;
  }
  if (stops.length > 0) {
    await tx`
      update tributary.table_captures t set stop_lsn = v.lsn::pg_lsn
        from unnest(${stops.map((s) => s.id)}::bigint[], ${stops.map((s) => Lsn.format(s.lsn))}::text[]) as v(id, lsn)
       where t.id = v.id and t.stop_lsn is null`;
  }
  if (touched.size > 0) {
    await tx`
      update tributary.table_captures t set last_change_at = greatest(t.last_change_at, v.at::timestamptz)
        from unnest(${[...touched.keys()]}::bigint[], ${[...touched.values()]}::text[]) as v(id, at)
       where t.id = v.id`;
  }
  if (snapshots.length > 0) {
    // Chunks of one capture in one batch: their rows add up, the last one's cursor and end count.
    const merged = new Map<string, { requestedAt: string; cursor: string[]; rows: number; done: boolean }>();
    for (const chunk of snapshots) {
      const seen = merged.get(`${chunk.id}/${chunk.requestedAt}`);
      merged.set(`${chunk.id}/${chunk.requestedAt}`, { ...chunk, rows: chunk.rows + (seen?.rows ?? 0) });
    }
    const ids = [...merged.keys()].map((k) => k.slice(0, k.indexOf("/")));
    const chunks = [...merged.values()];
    // Text arrays: postgres.js serializes only JS booleans and Dates for bool[] and timestamptz (to ms).
    // Guarded by the request's time: a backfill requested since starts over and must not be overwritten.
    await tx`
      update tributary.table_captures t
         set snapshot_cursor = array(select jsonb_array_elements_text(v.cursor::jsonb)),
             snapshot_rows_done = t.snapshot_rows_done + v.rows,
             snapshot_state = case when v.done_text::boolean then 'done' else 'running' end,
             snapshot_finished_at = case when v.done_text::boolean then now() end
        from unnest(${ids}::bigint[], ${chunks.map((c) => c.requestedAt)}::text[], ${chunks.map((c) => JSON.stringify(c.cursor))}::text[],
                    ${chunks.map((c) => `${c.rows}`)}::bigint[], ${chunks.map((c) => (c.done ? "true" : "false"))}::text[]) as v(id, requested_at, cursor, rows, done_text)
       where t.id = v.id and t.snapshot_requested_at = v.requested_at::timestamptz`;
  }
}

/** Runs a `copy … from stdin` statement with `chunks` as its data, settling on the server's refusal too (see above). */
export async function copyChunks(tx: TransactionSql, statement: string, chunks: readonly Buffer[]): Promise<void> {
  await (await sendCopy(tx, statement, chunks)).answered;
}

/**
 * Sends a `copy … from stdin` statement, `chunks` as its data, and CopyDone;
 * resolves once they are on the socket (the connection takes the next query)
 * with `answered`, the server's answer. Rejects at once if the server
 * refuses the COPY before all its data is sent (postgres.js then frees the
 * connection itself).
 */
async function sendCopy(tx: TransactionSql, statement: string, chunks: readonly Buffer[]): Promise<{ answered: Promise<void> }> {
  const query = tx.unsafe(statement);
  const refused = new Promise<never>((_, reject) => {
    const settle = query as unknown as { reject: (error: unknown) => void };
    const original = settle.reject;
    settle.reject = (error: unknown) => {
      reject(error);
      original(error);
    };
  });
  refused.catch(() => undefined);
  const copy = await Promise.race([query.writable(), refused]);
  const answered = Promise.race([
    new Promise<void>((resolve, reject) => {
      copy.once("error", reject);
      copy.once("finish", resolve);
    }),
    refused,
  ]);
  answered.catch(() => undefined);
  // One CopyData message per chunk. Once the last one's callback ran, nothing
  // is buffered: end() runs the writable's final at once, which writes
  // CopyDone and frees the connection.
  await Promise.race([
    new Promise<void>((resolve, reject) => {
      const last = chunks.length - 1;
      if (last < 0) return resolve();
      chunks.forEach((chunk, i) => copy.write(chunk, i === last ? (error) => (error ? reject(error) : resolve()) : undefined));
    }),
    refused,
  ]);
  // Destroyed once finished, postgres.js would send CopyFail into the COPY sent after this one (see above).
  (copy as unknown as { _destroy: (error: Error | null, callback: (error?: Error | null) => void) => void })._destroy = (error, callback) => callback(error);
  copy.end();
  return { answered };
}

/**
 * Waits for every answer, failing with the first in `answers`' order that
 * failed: the server answers in the order they were sent, and an error
 * there aborts the transaction, so what was sent after it fails too.
 */
async function settledInOrder(answers: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(answers);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

async function withDeadline<T>(work: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BatchWriteTimeoutError(`${what} did not finish within ${timeoutMs} ms; the relay reconnects`)), timeoutMs);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
    work.catch(() => undefined);
  }
}
