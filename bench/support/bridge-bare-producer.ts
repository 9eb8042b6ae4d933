/**
 * bench:bridge (b): the ceiling. A bare kafkajs idempotent producer (acks =
 * all, maxInFlightRequests 1, the bridge's settings) sends the SAME records
 * the bridge sent — built beforehand, untimed, with toKafkaRecord from the
 * events read out of tributary.events — to fresh topics on the same broker,
 * in the bridge's per-partition batch size, as fast as it can. Ways to send
 * (each timed on its own fresh topics, from the first send to the last ack):
 *
 *   sequential   one partition batch per send(), one send at a time
 *   concurrent   one partition batch per send(), `concurrency` sends in
 *                flight (at most one per partition), like the bridge
 *   batched      sendBatch() of the next batch of `concurrency` partitions:
 *                one Produce request carries them all, one at a time
 *   batched-all  sendBatch() of the next batch of every partition left
 *   producers    like concurrent, through `producers` idempotent producers
 *                (each its own connection), a partition always through the
 *                same one: the bridge's way since issue 15
 *
 * kafkajs's idempotent producer takes a per-broker lock around each Produce
 * request (and encodes the request inside it), so with one broker and one
 * producer concurrent sends still go one request at a time; sendBatch puts
 * several partitions in one request, several producers put several requests
 * on the wire.
 */
import kafkajs, { type Message, type Producer } from "kafkajs";
import postgres from "postgres";
import { readRawPartition } from "@tributary/client/internals";
import { toKafkaRecord, type KafkaRecord } from "@tributary/kafka-bridge";
import { cpuBetween, cpuSnapshot, processCpuSeconds, type CpuUse } from "./cpu-accounting.ts";
import { createTopics, endOffsets } from "./bridge-topics.ts";
import { fmt, progress } from "./report-table.ts";

const { Kafka, logLevel } = kafkajs;

export const BARE_MODES = ["sequential", "concurrent", "batched", "batched-all", "producers"] as const;
export type BareMode = (typeof BARE_MODES)[number];

export interface PartitionRecords {
  readonly stream: string;
  readonly partition: number;
  readonly records: readonly Message[];
}

/** Every event of `streams`, as the bridge's records (stream partition p → Kafka partition p), per partition in offset order. */
export async function readRecords(url: string, streams: readonly string[], partitions: number): Promise<PartitionRecords[]> {
  // Read as the bridge reads (raw), so both sides send the very same bytes.
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const result: PartitionRecords[] = [];
  try {
    for (const stream of streams) {
      for (let partition = 0; partition < partitions; partition++) {
        const records: Message[] = [];
        for (;;) {
          const events = await readRawPartition(sql, { stream, partition, from: records.length, limit: 10_000 });
          // Copies: the raw rows are views of the connection's receive buffers.
          for (const e of events) records.push(copied(toKafkaRecord(e, true)));
          if (events.length < 10_000) break;
        }
        result.push({ stream, partition, records });
      }
    }
  } finally {
    await sql.end();
  }
  return result;
}

function copied(r: KafkaRecord): KafkaRecord {
  const headers: Record<string, string | Buffer> = {};
  for (const [name, value] of Object.entries(r.headers)) headers[name] = typeof value === "string" ? value : Buffer.from(value);
  return { ...r, key: Buffer.from(r.key), value: Buffer.from(r.value), headers };
}

export interface BareResult {
  readonly mode: BareMode;
  readonly seconds: number;
  readonly rate: number;
  readonly produceRequests: number;
  /** CPU seconds of this process (the producer) and of the broker JVM during the run. */
  readonly producerCpuSeconds: number;
  readonly brokerCpuSeconds: number;
  /** Who used the cores meanwhile (the broker and this producer are "bench+children"). */
  readonly cpu: CpuUse;
}

/** One partition's batches: the next one to send. */
interface Cursor {
  readonly stream: string;
  readonly topic: string;
  readonly partition: number;
  readonly records: readonly Message[];
  next: number;
}

export async function bareProducerRun(
  brokers: readonly string[],
  brokerPid: number,
  postmasterPid: number,
  data: readonly PartitionRecords[],
  options: { mode: BareMode; batchSize: number; concurrency: number; partitions: number; topicPrefix: string; producers: number },
): Promise<BareResult> {
  const streams = [...new Set(data.map((d) => d.stream))];
  const topicOf = (stream: string) => `${options.topicPrefix}${stream}`;
  const kafka = new Kafka({ clientId: `bench-bare-${options.mode}`, brokers: [...brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const producers = Array.from({ length: options.mode === "producers" ? options.producers : 1 }, () => kafka.producer({ idempotent: true, maxInFlightRequests: 1 }));
  let produceRequests = 0;
  for (const producer of producers) {
    producer.on(producer.events.REQUEST, ({ payload }) => {
      if (payload.apiName === "Produce") produceRequests++;
    });
  }
  try {
    await createTopics(admin, streams.map(topicOf), options.partitions);
    for (const producer of producers) await producer.connect();
    const cursors: Cursor[] = data.map((d) => ({ stream: d.stream, topic: topicOf(d.stream), partition: d.partition, records: d.records, next: 0 }));
    const total = data.reduce((sum, d) => sum + d.records.length, 0);
    progress(`(b) bare producer, ${options.mode}: ${fmt.int(total)} records`);
    const before = cpuSnapshot(postmasterPid);
    const cpuBefore = process.cpuUsage();
    const brokerBefore = processCpuSeconds(brokerPid) ?? 0;
    const started = performance.now();
    await SENDERS[options.mode](producers, cursors, options.batchSize, options.concurrency);
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    const brokerCpuSeconds = (processCpuSeconds(brokerPid) ?? 0) - brokerBefore;
    const cpuUse = cpuBetween(before, cpuSnapshot(postmasterPid));
    // Every partition holds exactly its records: nothing lost, nothing twice.
    const ends = await endOffsets(admin, streams.map(topicOf));
    for (const c of cursors) {
      const held = ends.get(c.topic)?.[c.partition] ?? 0;
      if (held !== c.records.length) throw new Error(`(b) ${options.mode}: ${c.topic}/${c.partition} holds ${held} records, expected ${c.records.length}`);
    }
    // Gone again, so every run meets a broker holding the same partitions and data.
    await admin.deleteTopics({ topics: streams.map(topicOf) });
    progress(`(b) ${options.mode}: ${seconds.toFixed(2)} s = ${fmt.int(total / seconds)} records/s, ${produceRequests} Produce requests`);
    return {
      mode: options.mode,
      seconds,
      rate: total / seconds,
      produceRequests,
      producerCpuSeconds: (cpu.user + cpu.system) / 1e6,
      brokerCpuSeconds,
      cpu: cpuUse,
    };
  } finally {
    for (const producer of producers) await producer.disconnect().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }
}

type Sender = (producers: readonly Producer[], cursors: Cursor[], batchSize: number, concurrency: number) => Promise<void>;

/** The next batch of a partition (and move past it). */
function take(c: Cursor, batchSize: number): Message[] {
  const batch = c.records.slice(c.next, c.next + batchSize);
  c.next += batch.length;
  return batch as Message[];
}

const left = (c: Cursor) => c.next < c.records.length;

/** sendBatch of the next batch of each cursor: one Produce request (one topic entry per topic, its partitions inside). */
async function sendBatches(producer: Producer, cursors: readonly Cursor[], batchSize: number): Promise<void> {
  const byTopic = new Map<string, Message[]>();
  for (const c of cursors) {
    const messages = byTopic.get(c.topic) ?? [];
    messages.push(...take(c, batchSize));
    byTopic.set(c.topic, messages);
  }
  await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
}

/**
 * Like the bridge: up to `concurrency` partitions in flight, one batch each,
 * the longest-waiting first; cursor i always through producer i mod n (the
 * bridge assigns its partitions in turn, too).
 */
async function inTurn(producers: readonly Producer[], cursors: readonly Cursor[], batchSize: number, concurrency: number): Promise<void> {
  const producerOf = new Map(cursors.map((c, i) => [c, producers[i % producers.length]!]));
  const waiting = cursors.filter(left);
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let c = waiting.shift(); c; c = waiting.shift()) {
        await producerOf.get(c)!.send({ topic: c.topic, acks: -1, messages: take(c, batchSize) });
        if (left(c)) waiting.push(c);
      }
    }),
  );
}

const SENDERS: Record<BareMode, Sender> = {
  async sequential([producer], cursors, batchSize) {
    while (cursors.some(left)) {
      for (const c of cursors) {
        if (left(c)) await producer!.send({ topic: c.topic, acks: -1, messages: take(c, batchSize) });
      }
    }
  },
  concurrent: inTurn,
  producers: inTurn,
  async batched([producer], cursors, batchSize, concurrency) {
    const waiting = cursors.filter(left);
    while (waiting.length > 0) {
      const round = waiting.splice(0, concurrency);
      await sendBatches(producer!, round, batchSize);
      waiting.push(...round.filter(left));
    }
  },
  async "batched-all"([producer], cursors, batchSize) {
    for (let round = cursors.filter(left); round.length > 0; round = cursors.filter(left)) await sendBatches(producer!, round, batchSize);
  },
};
