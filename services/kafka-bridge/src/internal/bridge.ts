/**
 * The Kafka bridge (docs/ARCHITECTURE.md invariant 11): a consumer group member that
 * forwards each batch of a stream partition to its Kafka topic and lets the
 * group commit the stream offset only after Kafka acknowledged the batch.
 *
 *   stream partition batch ─► producer.send (idempotent, acks = all,
 *                             one request in flight) ─► ack ─► offset commit
 *        └ its next batch is read meanwhile (the consumer's prefetch)
 *
 * Nothing is lost: an offset moves only past acknowledged records. Per-key
 * order is kept: a partition's batches go one after another, and the producer
 * never reorders within a partition. A crash re-sends the uncommitted tail
 * (duplicates carry the same tributary-id header).
 *
 * Several producers (`producers`, default 4), each with its own connections:
 * a kafkajs idempotent producer encodes and sends one Produce request per
 * broker at a time, so with one producer the encoding of the next request and
 * the broker's work on the current one never overlap (bench:bridge). A stream
 * partition always goes through the same producer (assigned in turn on its
 * first batch), so what one stream partition writes to a Kafka partition —
 * retries included — comes from one idempotent producer in order, exactly as
 * with a single producer; producers differ only between stream partitions,
 * whose relative order no one was promised.
 *
 * Kafka down or slow: the send is retried with backoff for as long as it
 * takes, the batches stay in memory (at most 2 × `concurrency` batches of
 * `batchSize` events: those in flight and the next ones, read ahead), the
 * group's lag grows and `tributary status` shows it. N bridges with the same
 * group share the partitions like any other members.
 */
import { trace } from "@opentelemetry/api";
import { Duration, Effect, Schedule } from "effect";
import { Kafka, logLevel, Partitioners, type KafkaConfig, type Producer } from "kafkajs";
import type { Sql } from "postgres";
import type { Registry } from "prom-client";
import { consumer, type Consumer, connectPostgres } from "@tributary/client";
import { BridgeMetrics } from "./bridge-metrics.ts";
import { BridgeError, explainKafkaError, isFatal } from "./errors.ts";
import { toKafkaRecord } from "./kafka-record.ts";
import { routeTopics, type TopicNaming, type TopicRoute } from "./topics.ts";

export interface BridgeConfig extends TopicNaming {
  readonly databaseUrl: string;
  readonly streams: readonly string[];
  /** kafkajs client settings: brokers, clientId, ssl, sasl, … */
  readonly kafka: KafkaConfig;
  /** Create missing topics with the stream's partition count (default false: a missing topic is an error). */
  readonly createTopics?: boolean;
  /** The consumer group the bridges share (default "tributary-bridge"). */
  readonly group?: string;
  readonly batchSize?: number;
  readonly concurrency?: number;
  /** Idempotent producers, each with its own broker connections (default 4); a stream partition sticks to one. */
  readonly producers?: number;
  readonly sessionTimeoutMs?: number;
  readonly log?: (message: string) => void;
  /** A prom-client registry for the bridge's metrics and its group member's (bridge-metrics.ts; README "Metrics"). None by default. */
  readonly metrics?: Registry;
}

export interface BridgeHandle {
  /** Resolves with the stream → topic routes once the bridge forwards; rejects like `done` if it never does. */
  readonly ready: Promise<readonly TopicRoute[]>;
  /** Settles when the bridge stops: resolves after stop(), rejects on a fatal error (bad credentials, missing topic…). */
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

export const DEFAULT_BRIDGE_GROUP = "tributary-bridge";

const backoff = Schedule.min([Schedule.exponential(Duration.millis(200), 2), Schedule.spaced(Duration.seconds(5))]);

/**
 * Starts the bridge. Kafka unreachable at start is retried with backoff (and
 * logged) until it answers or stop() is called; bad credentials, a missing
 * topic or stream are fatal (`done` rejects with a BridgeError that says what
 * to fix).
 */
export function startBridge(config: BridgeConfig): BridgeHandle {
  const log = config.log ?? ((m: string) => console.error(`[tributary bridge] ${m}`));
  const stopping = new AbortController();
  let resources: Resources | null = null;
  const run = (async () => {
    if (config.streams.length === 0) throw new BridgeError("INVALID_CONFIG", "no streams to forward: streams is empty");
    const producerTotal = producerCount(config);
    const kafka = new Kafka({ logLevel: logLevel.NOTHING, ...config.kafka });
    const sql = connectPostgres(config.databaseUrl, { max: 4 + (config.concurrency ?? 8), onnotice: () => {}, connection: { application_name: "tributary-bridge" } });
    resources = { sql, kafka, producers: [], member: null };
    const routes = await Effect.runPromise(
      Effect.tryPromise({ try: () => route(sql, kafka, config), catch: (error) => error }).pipe(
        Effect.tapError((error) => Effect.sync(() => {
          if (error instanceof BridgeError && error.code === "KAFKA_UNREACHABLE") log(`${error.message}; retrying with backoff`);
        })),
        Effect.retry({ schedule: backoff, while: (error) => error instanceof BridgeError && error.code === "KAFKA_UNREACHABLE" }),
      ),
      { signal: stopping.signal },
    );
    for (const r of routes) {
      log(`${r.stream} → ${r.topic} (${r.samePartitioning
        ? `partition p → p, ${r.streamPartitions} partitions`
        : `by key: ${r.streamPartitions} stream partitions, ${r.topicPartitions} topic partitions`})`);
    }
    for (let i = 0; i < producerTotal; i++) {
      const producer = kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        // kafkajs 2's default partitioner is Java-compatible murmur2: the same as the relay's.
        createPartitioner: Partitioners.DefaultPartitioner,
      });
      resources.producers.push(producer);
      await producer.connect();
    }
    resources.member = await forward(sql, resources.producers, routes, config, log);
    return routes;
  })();
  const stop = async () => {
    stopping.abort();
    await run.catch(() => undefined);
    await release(resources);
  };
  const done = run.then(
    () => resources!.member!.done.catch(async (error: unknown) => {
      await release(resources);
      throw error;
    }),
    async (error: unknown) => {
      await release(resources);
      if (stopping.signal.aborted) return;
      throw error;
    },
  );
  done.catch(() => undefined);
  return { ready: run, done, stop };
}

interface Resources {
  sql: Sql;
  kafka: Kafka;
  producers: Producer[];
  member: Consumer | null;
}

export const DEFAULT_BRIDGE_PRODUCERS = 4;

function producerCount(config: BridgeConfig): number {
  const n = config.producers ?? DEFAULT_BRIDGE_PRODUCERS;
  if (!Number.isInteger(n) || n < 1) throw new BridgeError("INVALID_CONFIG", `producers must be a positive integer, not ${n}`);
  return n;
}

async function release(resources: Resources | null): Promise<void> {
  if (!resources) return;
  await resources.member?.stop().catch(() => undefined);
  await Promise.all(resources.producers.map((p) => p.disconnect().catch(() => undefined)));
  await resources.sql.end({ timeout: 1 });
}

/** Connects an admin client and maps every stream to its topic. */
async function route(sql: Sql, kafka: Kafka, config: BridgeConfig): Promise<TopicRoute[]> {
  const admin = kafka.admin();
  try {
    await admin.connect().catch((error: unknown) => {
      throw new BridgeError(isFatal(error) ? "KAFKA_AUTH" : "KAFKA_UNREACHABLE", explainKafkaError(error), { cause: error });
    });
    return await routeTopics(sql, admin, config.streams, config, config.createTopics ?? false);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** Joins the bridge group: each batch is sent, acknowledged, then committed. */
async function forward(sql: Sql, producers: readonly Producer[], routes: readonly TopicRoute[], config: BridgeConfig, log: (m: string) => void): Promise<Consumer> {
  const byStream = new Map(routes.map((r) => [r.stream, r]));
  const metrics = config.metrics ? new BridgeMetrics(config.metrics) : null;
  for (const r of routes) metrics?.routed(r.stream, r.topic);
  let failing = false;
  // stream/partition → its producer, in turn on first sight: the 8 partitions
  // of a stream spread over the producers, and a retried batch goes through
  // the producer that holds its sequence numbers.
  const producerOf = new Map<string, Producer>();
  const pick = (stream: string, partition: number): Producer => {
    const key = `${stream}\u0000${partition}`;
    let producer = producerOf.get(key);
    if (!producer) producerOf.set(key, (producer = producers[producerOf.size % producers.length]!));
    return producer;
  };
  return consumer(sql, {
    group: config.group ?? DEFAULT_BRIDGE_GROUP,
    streams: config.streams,
    batchSize: config.batchSize ?? 500,
    concurrency: config.concurrency ?? 8,
    // A partition's next batch is read while this one is sent and committed.
    prefetch: true,
    ...(config.sessionTimeoutMs ? { sessionTimeoutMs: config.sessionTimeoutMs } : {}),
    // Kafka being down is not the event's fault: retry for as long as it takes.
    retries: Number.MAX_SAFE_INTEGER,
    retry: backoff,
    log,
    ...(config.metrics ? { metrics: config.metrics } : {}),
    // Raw events: their bytes go to Kafka as they are (kafka-record.ts).
    rawBatchHandler: async (events) => {
      const route = byStream.get(events[0]!.stream)!;
      // The batch runs in the member's CONSUMER span, linked to each event's producer; the records keep the headers.
      trace.getActiveSpan()?.setAttribute("tributary.kafka.topic", route.topic);
      const startedAt = performance.now();
      try {
        await pick(route.stream, events[0]!.partition).send({
          topic: route.topic,
          acks: -1,
          messages: events.map((e) => toKafkaRecord(e, route.samePartitioning)),
        });
        metrics?.sent(route.stream, route.topic, events.length, (performance.now() - startedAt) / 1000);
        if (failing) log("Kafka accepts records again");
        failing = false;
      } catch (error) {
        metrics?.failed(route.stream, route.topic);
        if (!failing) log(`sending to ${route.topic} failed: ${explainKafkaError(error)}; retrying with backoff, nothing is committed meanwhile`);
        failing = true;
        throw error;
      }
    },
  });
}
