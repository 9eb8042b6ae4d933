/**
 * Where the bench:bridge child's wall time goes: the bundle
 * (bridge-process.ts) resolves the bridge's own imports of `postgres` and
 * `kafkajs` to this module, which hands out the real ones with timers on:
 *
 *   fetch / commit / other  wall time of the tagged-template queries the
 *                           bridge's consumer runs on its pool (queueing for a
 *                           connection and postgres.js parsing the rows
 *                           included; heartbeats run in sql.begin: not seen)
 *   send                    producer.send() (and sendBatch()) calls: the
 *                           bridge's whole batchHandler (records built,
 *                           waiting for the idempotent producer's per-broker
 *                           lock, the request)
 *   produce requests        kafkajs's REQUEST instrumentation events for
 *                           Produce: how many went out, their time on the
 *                           wire (sent → response read) and queued on the
 *                           connection
 *
 * Nothing here changes what the bridge does; the proxies only read clocks.
 */
import kafkajs, { type Producer, type ProducerBatch, type ProducerConfig, type ProducerRecord } from "kafkajs";
import realPostgres, { type Sql } from "postgres";

export interface Timing {
  count: number;
  ms: number;
  /** Rows returned (queries) or records sent (send); unused for produce requests. */
  items: number;
}

export interface BridgeTimings {
  readonly fetch: Timing;
  readonly commit: Timing;
  readonly other: Timing;
  /** maxConcurrent: most send() calls in flight at once. */
  readonly send: Timing & { maxConcurrent: number };
  /** Produce requests: ms = sum of their (sent → response) durations; pendingMs = queued on the connection. */
  readonly produce: Timing & { pendingMs: number };
}

const timing = (): Timing => ({ count: 0, ms: 0, items: 0 });
export const timings: BridgeTimings = {
  fetch: timing(),
  commit: timing(),
  other: timing(),
  send: { ...timing(), maxConcurrent: 0 },
  produce: { ...timing(), pendingMs: 0 },
};

const kindOf = (text: string): "fetch" | "commit" | "other" =>
  text.includes("cross join lateral") ? "fetch" : text.includes("insert into tributary.group_offsets") ? "commit" : "other";

function timed(sql: Sql): Sql {
  return new Proxy(sql, {
    apply(target, thisArg, args: unknown[]) {
      const query = Reflect.apply(target as unknown as (...a: unknown[]) => unknown, thisArg, args);
      const strings = args[0] as TemplateStringsArray | undefined;
      if (!Array.isArray(strings) || !("raw" in strings)) return query;
      const kind = timings[kindOf(strings.join("?"))];
      const started = performance.now();
      // The consumer awaits every query it makes at once, so then() here starts nothing early.
      void (query as Promise<unknown[]>).then(
        (rows) => {
          kind.count++;
          kind.ms += performance.now() - started;
          kind.items += Array.isArray(rows) ? rows.length : 0;
        },
        () => undefined,
      );
      return query;
    },
  });
}

/** The `postgres` factory with every pool it makes timed. */
const postgres = ((...args: Parameters<typeof realPostgres>) => timed(realPostgres(...args))) as typeof realPostgres;
export default postgres;

export const { logLevel, Partitioners, CompressionTypes } = kafkajs;

/** kafkajs's Kafka, whose producers time their sends and Produce requests. */
export class Kafka extends kafkajs.Kafka {
  override producer(config?: ProducerConfig): Producer {
    const producer = super.producer(config);
    let inFlight = 0;
    producer.on(producer.events.REQUEST, ({ payload }) => {
      if (payload.apiName !== "Produce") return;
      timings.produce.count++;
      timings.produce.ms += payload.duration;
      timings.produce.pendingMs += payload.pendingDuration;
    });
    const send = producer.send.bind(producer);
    producer.send = async (record: ProducerRecord) => {
      const started = performance.now();
      inFlight++;
      timings.send.maxConcurrent = Math.max(timings.send.maxConcurrent, inFlight);
      try {
        return await send(record);
      } finally {
        inFlight--;
        timings.send.count++;
        timings.send.items += record.messages.length;
        timings.send.ms += performance.now() - started;
      }
    };
    const sendBatch = producer.sendBatch.bind(producer);
    producer.sendBatch = async (batch: ProducerBatch) => {
      const started = performance.now();
      inFlight++;
      timings.send.maxConcurrent = Math.max(timings.send.maxConcurrent, inFlight);
      try {
        return await sendBatch(batch);
      } finally {
        inFlight--;
        timings.send.count++;
        timings.send.items += (batch.topicMessages ?? []).reduce((n, t) => n + t.messages.length, 0);
        timings.send.ms += performance.now() - started;
      }
    };
    return producer;
  }
}
