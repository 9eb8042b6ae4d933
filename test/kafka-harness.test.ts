/**
 * The Kafka the harness provides behaves like the Kafka the bridge will meet:
 * the idempotent producer round-trips, missing topics are an error (no auto
 * creation), SASL/PLAIN checks the password, and a broker killed and started
 * again keeps its data while a producer waiting on it recovers.
 */
import { randomBytes } from "node:crypto";
import kafkajs, { Partitioners, type KafkaConfig, type Message } from "kafkajs";
import { expect, it } from "vitest";
import { dedicatedKafkaBroker, describeKafka, kafkaConfig } from "./support/kafka.ts";

const { Kafka, KafkaJSSASLAuthenticationError } = kafkajs; // error classes are not ESM named exports

function topicName(): string {
  return `harness-${randomBytes(4).toString("hex")}`;
}

async function createTopic(config: KafkaConfig, topic: string, numPartitions: number): Promise<void> {
  const admin = new Kafka(config).admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
}

/** Records in the topic: the sum of its partitions' end offsets. */
async function recordCount(config: KafkaConfig, topic: string): Promise<number> {
  const admin = new Kafka(config).admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
  } finally {
    await admin.disconnect();
  }
}

/** Reads `count` records from the start of the topic with a consumer group of its own. */
async function readTopic(config: KafkaConfig, topic: string, count: number, timeoutMs = 30_000): Promise<Array<{ partition: number; key: string; value: string }>> {
  const consumer = new Kafka(config).consumer({ groupId: `reader-${randomBytes(4).toString("hex")}` });
  const records: Array<{ partition: number; key: string; value: string }> = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read ${records.length} of ${count} records from ${topic} in ${timeoutMs} ms`)), timeoutMs);
      void consumer.run({
        eachMessage: async ({ partition, message }) => {
          records.push({ partition, key: message.key!.toString(), value: message.value!.toString() });
          if (records.length >= count) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
  } finally {
    await consumer.disconnect();
  }
  return records;
}

function idempotentProducer(config: KafkaConfig) {
  return new Kafka(config).producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
}

function messages(from: number, to: number): Message[] {
  return Array.from({ length: to - from }, (_, i) => ({ key: `key-${(from + i) % 3}`, value: `value-${from + i}` }));
}

describeKafka("the test harness's Kafka", (kafka) => {
  it("round-trips records through the idempotent producer (acks -1), in order per key", async () => {
    const topic = topicName();
    await createTopic(kafkaConfig(), topic, 3);
    const producer = idempotentProducer(kafkaConfig());
    await producer.connect();
    try {
      for (let i = 0; i < 30; i += 10) await producer.send({ topic, acks: -1, messages: messages(i, i + 10) });
    } finally {
      await producer.disconnect();
    }
    const records = await readTopic(kafkaConfig(), topic, 30);
    expect(records.map((r) => r.value).sort()).toEqual(messages(0, 30).map((m) => m.value).sort());
    for (const key of ["key-0", "key-1", "key-2"]) {
      const ofKey = records.filter((r) => r.key === key);
      expect(new Set(ofKey.map((r) => r.partition)).size).toBe(1);
      expect(ofKey.map((r) => r.value)).toEqual(messages(0, 30).filter((m) => m.key === key).map((m) => m.value));
    }
  });

  it("does not create topics on demand: producing to a missing topic fails", async () => {
    const producer = idempotentProducer(kafkaConfig({ retry: { retries: 1, initialRetryTime: 100 } }));
    await producer.connect();
    try {
      await expect(producer.send({ topic: topicName(), acks: -1, messages: messages(0, 1) })).rejects.toThrow(/does not host this topic-partition/);
    } finally {
      await producer.disconnect();
    }
  });

  it("SASL/PLAIN accepts the harness's user and rejects a wrong password", async (ctx) => {
    if (kafka.sasl === null) return ctx.skip("TRIBUTARY_TEST_KAFKA_BROKERS gives no SASL listener to the harness");
    const { mechanism, username, password } = kafka.sasl;
    const sasl = (password: string) => kafkaConfig({ brokers: kafka.saslBrokers, sasl: { mechanism, username, password }, retry: { retries: 0 } });
    const admin = new Kafka(sasl(password)).admin();
    await admin.connect();
    await expect(admin.listTopics()).resolves.toBeInstanceOf(Array);
    await admin.disconnect();

    const wrong = new Kafka(sasl("not-the-password")).admin();
    const error = await wrong.connect().then(() => null, (e: unknown) => e);
    await wrong.disconnect();
    expect(error).toBeInstanceOf(KafkaJSSASLAuthenticationError);
    expect((error as Error).message).toMatch(/SASL PLAIN authentication failed: .*Invalid username or password/);
  });

  it("a broker killed for 3 s and started again keeps its data, and a producer waiting on it recovers", async (ctx) => {
    const broker = await dedicatedKafkaBroker(ctx);
    const config = kafkaConfig({ brokers: broker.brokers, retry: { retries: 20, initialRetryTime: 200, maxRetryTime: 2000 } });
    const topic = topicName();
    await createTopic(config, topic, 2);
    const producer = idempotentProducer(config);
    await producer.connect();
    try {
      await producer.send({ topic, acks: -1, messages: messages(0, 10) });
      await broker.kill();
      const sentWhileDown = producer.send({ topic, acks: -1, messages: messages(10, 20) });
      sentWhileDown.catch(() => {}); // awaited below
      await new Promise((r) => setTimeout(r, 3000));
      await broker.restart();
      await sentWhileDown;
      await producer.send({ topic, acks: -1, messages: messages(20, 30) });
    } finally {
      await producer.disconnect();
    }
    const records = await readTopic(config, topic, 30);
    expect(records.map((r) => r.value).sort()).toEqual(messages(0, 30).map((m) => m.value).sort()); // none lost
    expect(await recordCount(config, topic)).toBe(30); // none twice
  });
});
