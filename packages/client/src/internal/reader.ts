/**
 * Reading streams without a consumer group: tail one partition or a whole
 * stream from a start position, and read one key's history. Nothing is
 * committed anywhere: a reader that restarts starts from its `from` again.
 *
 * How a tail runs (one async generator, one partition or all of a stream):
 *   1. LISTEN on `tributary_events` (the relay notifies after every batch it
 *      commits), *then* resolve the start positions and read. Listening first
 *      means an event committed after a read always leaves a pending wake-up:
 *      none is lost between "read, found nothing" and "wait".
 *   2. A round reads up to `batchSize` events per partition past each
 *      partition's position, all partitions in one round trip, and yields
 *      them partition by partition in offset order (per-partition order =
 *      offset order, invariant 3; across partitions nothing is promised).
 *   3. If some partition filled its batch, read again at once. Otherwise the
 *      tail has caught up and sleeps until a notification (the normal case:
 *      within milliseconds of the relay's commit), the fallback poll
 *      (`pollIntervalMs`, for a notification missed while postgres.js
 *      re-establishes its LISTEN connection), or the AbortSignal.
 * Backpressure: a round starts only when the consumer asks for the next
 * event; memory is one round (batchSize × partitions events).
 * Stopping: the AbortSignal or a `break` out of `for await` ends the
 * generator, which removes its listener (UNLISTEN when it was the last one on
 * the connection) and leaves no timer behind.
 * Lost connections: a connection error that can heal (connection-errors.ts:
 * refused, reset, terminated by an administrator, server restarting) does
 * not end the tail. It waits a capped, jittered exponential backoff
 * (`reconnect`), listens again and reads on from each partition's position:
 * a round's events are yielded only after the whole round was read, and a
 * position moves only past a yielded event, so after a reconnect nothing is
 * yielded twice and nothing is skipped. Any other error (authentication,
 * unknown database, permission denied, Tributary not migrated) ends the
 * iteration with that error: retrying would not fix it.
 * Traces: each yielded event gets a CONSUMER span linked to its producer's
 * context (trace-context.ts), from the yield until the loop asks for the
 * next event; `eventTraceContext(event)` hands it to the loop body.
 * Retention: a position below its partition's low watermark (low-watermarks.ts)
 * ends the iteration with OFFSET_OUT_OF_RANGE, or with `onOutOfRange:
 * "resume"` goes on from the watermark and tells `onMissed` what it missed.
 */
import type { Sql, TransactionSql } from "postgres";
import { EVENTS_CHANNEL } from "@tributary/core";
import { isConnectionError } from "./connection-errors.ts";
import { TributaryReadError } from "./errors.ts";
import { toStreamEvent, type EventRow, type StreamEvent } from "./events.ts";
import { holdEventSpan, producerLink, startConsumerSpan } from "./trace-context.ts";
import { describeMissed, lowWatermarks, missedBelowWatermark, type MissedEvents, type OutOfRangePolicy } from "./low-watermarks.ts";

/**
 * Where a reader starts in each partition:
 *   "earliest"  the first retained offset (0 until retention drops some);
 *   "latest"    the partition's end when the reader starts (only new events);
 *   a number    that offset (past the end, the reader waits for it);
 *   a Date      the first event committed at or after that time, else the end.
 */
export type StartPosition = "earliest" | "latest" | number | Date;

export interface TailOptions {
  readonly stream: string;
  readonly from: StartPosition;
  /** Events read per partition per round trip (default 500). */
  readonly batchSize?: number;
  /** Fallback poll when no notification arrives (default 2000 ms). */
  readonly pollIntervalMs?: number;
  /** Aborting ends the iteration (the pending `next()` returns done). */
  readonly signal?: AbortSignal;
  /**
   * Backoff between reconnect attempts after a lost connection: from
   * `initialDelayMs` (default 100), doubling, capped at `maxDelayMs`
   * (default 10,000), each delay jittered down by up to half. `false`: a lost
   * connection ends the iteration with its error.
   */
  readonly reconnect?: false | { readonly initialDelayMs?: number; readonly maxDelayMs?: number };
  /** Told before each reconnect attempt (1, 2, …) with the error and the delay. */
  readonly onReconnect?: (error: unknown, attempt: number, delayMs: number) => void;
  /**
   * A partition's position below its low watermark (retention dropped the
   * events there): "fail" (default) ends the iteration with
   * OFFSET_OUT_OF_RANGE; "resume" goes on from the watermark.
   */
  readonly onOutOfRange?: OutOfRangePolicy;
  /** With "resume": told what each partition missed, before its next event. */
  readonly onMissed?: (missed: MissedEvents) => void;
}

/** Every event of one partition from `from` on, in offset order, then new ones as the relay writes them. */
export function tailPartition(sql: Sql, options: TailOptions & { readonly partition: number }): AsyncIterable<StreamEvent> {
  return tail(sql, options, [options.partition]);
}

/** Every partition of a stream from `from` on, then new events as they come; each partition in offset order. */
export function tailStream(sql: Sql, options: TailOptions): AsyncIterable<StreamEvent> {
  return tail(sql, options, "all");
}

async function* tail(sql: Sql, options: TailOptions, which: number[] | "all"): AsyncGenerator<StreamEvent> {
  const { stream, from, signal } = options;
  const batchSize = options.batchSize ?? 500;
  const pollIntervalMs = options.pollIntervalMs ?? 2000;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, not ${batchSize}`);
  if (!(pollIntervalMs > 0)) throw new RangeError(`pollIntervalMs must be positive, not ${pollIntervalMs}`);
  const backoff = reconnectBackoff(options.reconnect);
  checkStart(from);
  if (signal?.aborted) return;

  let partitions: number[] | undefined;
  // Each partition's next offset: set once, then moved only past yielded events.
  let positions: Map<number, number> | undefined;
  let failures = 0;
  while (!signal?.aborted) {
    let wakeUps: WakeUps | undefined;
    try {
      partitions ??= await partitionsToRead(sql, stream, which);
      wakeUps = await listenForEvents(sql, signal);
      if (!positions) {
        positions = await resolveStarts(sql, stream, partitions, from);
        if (typeof from === "number") {
          for (const [partition, low] of await lowWatermarks(sql, stream, partitions)) {
            if (low > from) positions.set(partition, outOfRange(options, { stream, partition, position: from, lowWatermark: low, missed: low - from }));
          }
        }
      }
      while (!signal?.aborted) {
        wakeUps.clear();
        const events = await readRound(sql, stream, positions, batchSize);
        failures = 0;
        const read = new Map<number, number>();
        for (const event of events) {
          if (signal?.aborted) return;
          const position = positions.get(event.partition)!;
          if (event.offset !== position) {
            // Dense above the watermark: a read that starts past its position started at the watermark.
            if (!(await missedBelowWatermark(sql, stream, event.partition, position))) {
              throw new Error(`${stream}/${event.partition}: read offset ${event.offset} at position ${position}, above the low watermark (offsets must be dense)`);
            }
            outOfRange(options, { stream, partition: event.partition, position, lowWatermark: event.offset, missed: event.offset - position });
          }
          read.set(event.partition, (read.get(event.partition) ?? 0) + 1);
          positions.set(event.partition, event.offset + 1);
          const span = startConsumerSpan(stream, () => ({
            attributes: {
              "messaging.system": "tributary",
              "messaging.destination.partition.id": String(event.partition),
              "messaging.message.id": event.id,
              "tributary.offset": event.offset,
            },
            links: [producerLink(event.headers)],
          }));
          // The span lasts while the loop body handles the event (trace-context.ts).
          const end = span === undefined ? undefined : holdEventSpan(event, span);
          try {
            yield event;
          } finally {
            end?.();
          }
        }
        const caughtUp = [...read.values()].every((n) => n < batchSize);
        if (caughtUp) await wakeUps.sleep(pollIntervalMs);
      }
    } catch (error) {
      if (!backoff || !isConnectionError(error) || signal?.aborted) throw error;
      failures++;
      const delayMs = backoff(failures);
      options.onReconnect?.(error, failures, delayMs);
      await abortableSleep(delayMs, signal);
    } finally {
      await wakeUps?.close();
    }
  }
}

/** Applies the tail's out-of-range policy: the position to go on from, or OFFSET_OUT_OF_RANGE. */
function outOfRange(options: TailOptions, missed: MissedEvents): number {
  if ((options.onOutOfRange ?? "fail") === "fail") {
    throw new TributaryReadError(
      "OFFSET_OUT_OF_RANGE",
      `${describeMissed(missed)}. Start from "earliest" (the low watermark), or pass onOutOfRange: "resume" to go on from it and be told what was missed`,
    );
  }
  options.onMissed?.(missed);
  return missed.lowWatermark;
}

/** The partitions a tail reads, checked against the stream's partition count. */
async function partitionsToRead(sql: Sql, stream: string, which: number[] | "all"): Promise<number[]> {
  const count = await streamPartitions(sql, stream);
  const partitions = which === "all" ? Array.from({ length: count }, (_, p) => p) : which;
  for (const p of partitions) {
    if (!Number.isInteger(p) || p < 0 || p >= count) {
      throw new TributaryReadError(
        "INVALID_PARTITION",
        `partition ${p} does not exist: stream '${stream}' has ${count} partition${count === 1 ? "" : "s"} (0 to ${count - 1})`,
      );
    }
  }
  return partitions;
}

/** The delay before reconnect attempt n (1, 2, …): exponential, capped, jittered down by up to half; null when off. */
function reconnectBackoff(option: TailOptions["reconnect"]): ((attempt: number) => number) | null {
  if (option === false) return null;
  const initialDelayMs = option?.initialDelayMs ?? 100;
  const maxDelayMs = option?.maxDelayMs ?? 10_000;
  if (!(initialDelayMs > 0) || !(maxDelayMs >= initialDelayMs)) {
    throw new RangeError(`reconnect: need 0 < initialDelayMs <= maxDelayMs, not ${initialDelayMs} and ${maxDelayMs}`);
  }
  return (attempt) => {
    const capped = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(attempt - 1, 30));
    return Math.round(capped * (0.5 + Math.random() / 2));
  };
}

function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done);
  });
}

/** One round: up to `limit` events of each partition from its position (read_partitions, migration 0011). */
async function readRound(sql: Sql, stream: string, positions: Map<number, number>, limit: number): Promise<StreamEvent[]> {
  const partitions = [...positions.keys()];
  const offsets = partitions.map((p) => positions.get(p)!);
  const rows = await sql<EventRow[]>`
    select e.stream, e.partition, e."offset", e.id, e.key, e.type, e.data, e.headers, e.committed_at
      from tributary.read_partitions(${stream}, ${partitions}::int[], ${offsets}::bigint[], ${limit}) e
     order by e.partition, e."offset"`;
  return rows.map(toStreamEvent);
}

interface WakeUps {
  /** Forget wake-ups seen so far: the read that follows covers them. */
  clear(): void;
  /** Resolves on the next notification, after `ms`, or on abort; at once if one is already pending. */
  sleep(ms: number): Promise<void>;
  /** Stops listening; resolves a pending sleep. */
  close(): Promise<void>;
}

async function listenForEvents(sql: Sql, signal: AbortSignal | undefined): Promise<WakeUps> {
  let pending = false;
  let wake: (() => void) | undefined;
  const nudge = () => {
    pending = true;
    wake?.();
  };
  const onAbort = () => wake?.();
  signal?.addEventListener("abort", onAbort);
  let listening;
  try {
    // onlisten runs again after postgres.js re-listens on a new connection:
    // notifications may have been missed meanwhile, so that is a wake-up too.
    listening = await sql.listen(EVENTS_CHANNEL, nudge, nudge);
  } catch (error) {
    signal?.removeEventListener("abort", onAbort);
    throw error;
  }
  const { unlisten } = listening;
  return {
    clear: () => {
      pending = false;
    },
    sleep: (ms) => {
      if (pending || signal?.aborted) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(done, ms);
        function done() {
          clearTimeout(timer);
          wake = undefined;
          resolve();
        }
        wake = done;
      });
    },
    close: async () => {
      signal?.removeEventListener("abort", onAbort);
      wake?.();
      // A dead connection must not keep a `break` waiting: the LISTEN died with it.
      await unlisten().catch(() => {});
    },
  };
}

/** The partition count of a stream; UNKNOWN_STREAM if it does not exist. */
export async function streamPartitions(sql: Sql | TransactionSql, stream: string): Promise<number> {
  const [row] = await sql<{ partitions: number }[]>`select partitions from tributary.streams where name = ${stream}`;
  if (!row) {
    // Hidden by row-level security? Then a permission error (42501) that names the grant, not "unknown".
    await sql`select tributary.authorize_read(${stream})`;
    throw new TributaryReadError(
      "UNKNOWN_STREAM",
      `stream '${stream}' does not exist: nothing has been appended to it and it was not created with ` +
        `tributary.create_stream. Check the name (tributary.streams lists the streams).`,
    );
  }
  return row.partitions;
}

function checkStart(from: StartPosition): void {
  if (from === "earliest" || from === "latest") return;
  if (typeof from === "number" && Number.isSafeInteger(from) && from >= 0) return;
  if (from instanceof Date && !Number.isNaN(from.getTime())) return;
  throw new TributaryReadError(
    "INVALID_START",
    `invalid start position ${from instanceof Date ? "Invalid Date" : JSON.stringify(from)}: ` +
      `use "earliest", "latest", an offset (an integer >= 0) or a valid Date`,
  );
}

/** The offset a reader of one partition starts at (see StartPosition). */
export async function resolveStart(sql: Sql | TransactionSql, stream: string, partition: number, from: StartPosition): Promise<number> {
  return (await resolveStarts(sql, stream, [partition], from)).get(partition)!;
}

/**
 * Start offsets of several partitions in one statement. Each query is one
 * snapshot, so "the first event at or after a time, else the end" cannot skip
 * an event written between the two lookups.
 */
async function resolveStarts(
  sql: Sql | TransactionSql,
  stream: string,
  partitions: readonly number[],
  from: StartPosition,
): Promise<Map<number, number>> {
  checkStart(from);
  if (from === "earliest") return lowWatermarks(sql, stream, partitions);
  if (typeof from === "number") return new Map(partitions.map((p) => [p, from]));
  const rows =
    from === "latest"
      ? await sql<{ partition: number; start: string }[]>`
          select p.partition, coalesce(po.next_offset, 0) as start
            from unnest(${partitions as number[]}::int[]) as p(partition)
            left join tributary.partition_offsets po on po.stream = ${stream} and po.partition = p.partition`
      : // committed_at is not indexed: first_offset_at (migration 0011) walks the
        // partition from the segment that can hold the time. Commit timestamps are
        // not strictly monotonic in commit (WAL) order, so a binary search could skip one.
        await sql<{ partition: number; start: string }[]>`
          select p.partition, coalesce(
                   tributary.first_offset_at(${stream}, p.partition, ${from}),
                   (select po.next_offset from tributary.partition_offsets po
                     where po.stream = ${stream} and po.partition = p.partition),
                   0) as start
            from unnest(${partitions as number[]}::int[]) as p(partition)`;
  return new Map(rows.map((r) => [r.partition, Number(r.start)]));
}

/**
 * Parses a start position as people write it: `earliest`, `latest`, an offset
 * (`1200`) or an ISO 8601 time (`2025-01-31`, `2025-01-31T12:00:00Z`; a time
 * without a zone is local time). INVALID_START says what is accepted.
 */
export function parseStartPosition(text: string): StartPosition {
  const value = text.trim();
  if (value === "earliest" || value === "latest") return value;
  if (/^\d+$/.test(value) && Number.isSafeInteger(Number(value))) return Number(value);
  const date = /^(\d{4})-(\d{2})-(\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i.exec(value);
  if (date) {
    const [year, month, day] = [Number(date[1]), Number(date[2]), Number(date[3])];
    const calendar = new Date(Date.UTC(year, month - 1, day));
    const at = new Date(value.replace(" ", "T"));
    // Date() rolls 2025-02-30 over to March 2: reject days a month does not have.
    if (calendar.getUTCMonth() === month - 1 && calendar.getUTCDate() === day && !Number.isNaN(at.getTime())) return at;
  }
  throw new TributaryReadError(
    "INVALID_START",
    `'${text}' is not a start position: use earliest, latest, an offset (e.g. 1200) ` +
      `or an ISO 8601 time (e.g. 2025-01-31T12:00:00Z)`,
  );
}

/**
 * The events of one key in offset order (an event-sourced aggregate's
 * history), from offset `from` (default 0), at most `limit` (default all).
 * All events of a key share a partition, so offset order is their commit
 * order; the (stream, key, "offset") index (migration 0002) serves the
 * query without a sort.
 */
export async function readKey(
  sql: Sql | TransactionSql,
  options: { stream: string; key: string; from?: number; limit?: number },
): Promise<StreamEvent[]> {
  const { stream, key, from = 0, limit } = options;
  if (!Number.isSafeInteger(from) || from < 0) throw new RangeError(`from must be an offset (an integer >= 0), not ${from}`);
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) throw new RangeError(`limit must be an integer >= 0, not ${limit}`);
  const rows = await sql<EventRow[]>`
    select stream, partition, "offset", id, key, type, data, headers, committed_at
      from tributary.events
     where stream = ${stream} and key = ${key} and "offset" >= ${from}
     order by "offset"
     ${limit === undefined ? sql`` : sql`limit ${limit}`}`;
  return rows.map(toStreamEvent);
}
