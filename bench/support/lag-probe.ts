/**
 * Commit → stream lag under a steady load: a producer paces transactions of
 * `eventsPerTransaction` events (default 1) at `rate` events/s into one stream, and a reader that LISTENs
 * on tributary_events reads each batch's new rows as soon as it is notified.
 * The lag of an event is `clock_timestamp() - committed_at` evaluated by the
 * database when the reader sees the row: one clock, the server's, from the
 * commit record's timestamp to the row being readable by a consumer.
 */
import postgres, { type Sql } from "postgres";
import { EVENTS_CHANNEL } from "@tributary/core";
import { benchEvent, BENCH_PARTITIONS, type BenchEvent } from "./event-payload.ts";

export interface LagOptions {
  readonly url: string;
  readonly stream: string;
  readonly rate: number;
  readonly seconds: number;
  /** Samples of events committed in the first `warmupSeconds` are dropped. */
  readonly warmupSeconds: number;
  readonly producerConnections: number;
  readonly eventsPerTransaction: number;
}

export interface LagResult {
  /** Events appended, including the one that waits for the relay to stream before the clock starts. */
  readonly appended: number;
  /** Events appended at the paced rate. */
  readonly produced: number;
  readonly achievedRate: number;
  readonly samples: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Most producer transactions in flight at once (reaching the cap means the producer fell behind). */
  readonly maxInFlight: number;
  /** "count/max ms" per second of commit time after the warm-up. */
  readonly perSecond: string;
}

const MAX_IN_FLIGHT = 64;

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Reads each partition of `stream` from where it stopped; records lags of rows committed after `since`. */
class LagReader {
  private readonly nextOffset: bigint[] = Array.from({ length: BENCH_PARTITIONS }, () => 0n);
  readonly lagsMs: number[] = [];
  /** Per second of commit time (since `since`): [count, max lag ms], to spot stalls. */
  readonly perSecond = new Map<number, [number, number]>();
  seen = 0;
  private reading: Promise<void> | null = null;
  private again = false;

  /** Lags are recorded for rows committed at or after this time (epoch seconds). */
  since = Number.POSITIVE_INFINITY;

  constructor(
    private readonly sql: Sql,
    private readonly stream: string,
  ) {}

  /** Coalesces notifications: one read at a time, one more if notified meanwhile. */
  wake(): Promise<void> {
    if (this.reading) {
      this.again = true;
      return this.reading;
    }
    this.reading = (async () => {
      do {
        this.again = false;
        await this.readNew();
      } while (this.again);
    })().finally(() => {
      this.reading = null;
    });
    return this.reading;
  }

  /** Waits for the read in flight, if any (before the reader's connection ends). */
  async idle(): Promise<void> {
    while (this.reading) await this.reading.catch(() => {});
  }

  private async readNew(): Promise<void> {
    const partitions = this.nextOffset.map((_, p) => p);
    const rows = await this.sql<{ partition: number; offset: string; lag_ms: number; committed: number }[]>`
      select e.partition, e."offset"::text as "offset",
             extract(epoch from clock_timestamp() - e.committed_at)::float8 * 1000 as lag_ms,
             extract(epoch from e.committed_at)::float8 as committed
        from unnest(${partitions}::int[], ${this.nextOffset.map(String)}::bigint[]) as w(p, o)
        join tributary.events e on e.stream = ${this.stream} and e.partition = w.p and e."offset" >= w.o`;
    for (const row of rows) {
      const offset = BigInt(row.offset);
      if (offset >= this.nextOffset[row.partition]!) this.nextOffset[row.partition] = offset + 1n;
      if (row.committed >= this.since) {
        this.lagsMs.push(row.lag_ms);
        const second = Math.floor(row.committed - this.since);
        const bucket = this.perSecond.get(second) ?? [0, 0];
        this.perSecond.set(second, [bucket[0] + 1, Math.max(bucket[1], row.lag_ms)]);
      }
    }
    this.seen += rows.length;
  }
}

/** One autocommit statement: tributary.append for one event, append_many for more. */
export function appendTransaction(sql: Sql, events: BenchEvent[]): Promise<unknown> {
  if (events.length === 1) {
    const e = events[0]!;
    return sql`select tributary.append(${e.stream}, ${e.key}, ${e.type}, ${e.data}::text::jsonb, ${e.headers}::text::jsonb)`;
  }
  return sql`
    select tributary.append_many(
      ${events.map((e) => e.stream)}::text[], ${events.map((e) => e.key)}::text[],
      ${events.map((e) => e.type)}::text[], ${events.map((e) => e.data)}::text[]::jsonb[],
      ${events.map((e) => e.headers)}::text[]::jsonb[])`;
}

async function waitUntil(done: () => boolean, reader: LagReader, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`lag probe: ${what} did not reach the stream within ${timeoutMs / 1000} s (saw ${reader.seen})`);
    await reader.wake();
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Appends at `rate` events/s for `seconds`, never more than MAX_IN_FLIGHT transactions at once. */
export async function paceAppends(producer: Sql, options: LagOptions): Promise<{ committed: number; seconds: number; maxInFlight: number }> {
  let issued = 0;
  let committed = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let failure: unknown = null;
  const started = performance.now();
  const durationMs = options.seconds * 1000;
  while (failure === null) {
    const elapsed = performance.now() - started;
    if (elapsed >= durationMs) break;
    const k = options.eventsPerTransaction;
    const due = Math.floor(((elapsed / 1000) * options.rate) / k) * k;
    while (issued < due && inFlight < MAX_IN_FLIGHT) {
      const events = Array.from({ length: k }, (_, i) => benchEvent(1_000_000_000 + issued + i, options.stream));
      issued += k;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      appendTransaction(producer, events).then(
        () => {
          inFlight--;
          committed += k;
        },
        (error: unknown) => {
          failure = error;
        },
      );
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  while (inFlight > 0 && failure === null) await new Promise((r) => setTimeout(r, 5));
  if (failure !== null) throw failure;
  return { committed, seconds: (performance.now() - started) / 1000, maxInFlight };
}

export async function measureLag(options: LagOptions): Promise<LagResult> {
  const producer = postgres(options.url, { max: options.producerConnections, onnotice: () => {} });
  const readerSql = postgres(options.url, { max: 1, onnotice: () => {} });
  try {
    const reader = new LagReader(readerSql, options.stream);
    // A read the notification starts fails the measurement at the next wait, not the process.
    let readFailure: unknown = null;
    const listener = await readerSql.listen(EVENTS_CHANNEL, () => {
      reader.wake().catch((error: unknown) => (readFailure ??= error));
    });
    const check = () => {
      if (readFailure !== null) throw readFailure;
    };
    // A freshly started relay may first re-read WAL from the slot's restart_lsn
    // (it moves only on running-xacts records): wait until one event goes
    // through before the clock starts, so the figures are steady-state ones.
    await appendTransaction(producer, [benchEvent(999_999_999, options.stream)]);
    await waitUntil(() => (check(), reader.seen >= 1), reader, 60_000, "the first event");
    const [now] = await readerSql<{ epoch: number }[]>`select extract(epoch from clock_timestamp())::float8 as epoch`;
    reader.since = now!.epoch + options.warmupSeconds;

    const { committed, seconds: producedSeconds, maxInFlight } = await paceAppends(producer, options);

    await waitUntil(() => (check(), reader.seen >= committed + 1), reader, 60_000, `all ${committed} events`);
    await listener.unlisten();
    await reader.idle();
    check();

    const sorted = [...reader.lagsMs].sort((a, b) => a - b);
    return {
      appended: committed + 1,
      produced: committed,
      achievedRate: committed / producedSeconds,
      samples: sorted.length,
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      maxMs: sorted.at(-1) ?? Number.NaN,
      maxInFlight,
      perSecond: [...reader.perSecond.entries()]
        .sort(([a], [b]) => a - b)
        .map(([, [n, max]]) => `${n}/${Math.round(max)}`)
        .join(" "),
    };
  } finally {
    await producer.end({ timeout: 5 });
    await readerSql.end({ timeout: 5 });
  }
}
