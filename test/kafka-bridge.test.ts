/**
 * The Kafka bridge against a real broker (docs/ARCHITECTURE.md invariant 11): nothing
 * lost and per-key order kept across kill -9 of the bridge and a Kafka
 * outage, duplicates only from re-sent uncommitted tails (identified by the
 * tributary-id header); bridges sharing partitions; partition mapping; the
 * errors a user meets (missing topic, unreachable brokers, bad credentials).
 */
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import kafkajs, { type KafkaConfig } from "kafkajs";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { appendBatch, createStream } from "@tributary/client";
import { murmur2, serveMetrics } from "@tributary/core";
import { Registry } from "prom-client";
import { startBridge, type BridgeHandle } from "@tributary/kafka-bridge";
import { startRelay, type RelayHandle } from "@tributary/relay";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { Fixture } from "./support/consumer-processes.ts";
import { dedicatedKafkaBroker, describeKafka, kafkaConfig } from "./support/kafka.ts";
import { eventually } from "./support/processes.ts";
import { promtoolCheck, sample, scrape } from "./support/metrics.ts";
import { waitForCount } from "./support/streams.ts";

const { Kafka } = kafkajs;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const backend = backends().find((b) => b.decoder === "pgoutput")!;
const root = fileURLToPath(new URL("..", import.meta.url));

interface Record {
  partition: number;
  key: string;
  value: string;
  headers: { [name: string]: string };
}

async function appendEvents(db: TestDatabase, stream: string, count: number, keys = 200): Promise<void> {
  for (let start = 0; start < count; start += 1000) {
    const n = Math.min(1000, count - start);
    await db.sql.begin((tx) => appendBatch(tx, Array.from({ length: n }, (_, i) => ({
      stream, key: `k${(start + i) % keys}`, type: "T", data: { n: start + i }, headers: { traceparent: `00-${start + i}` },
    }))));
  }
}

/** Every record of the topic, read from the beginning with a consumer group of its own. */
async function readTopic(config: KafkaConfig, topic: string, atLeast: number, timeoutMs = 60_000): Promise<Record[]> {
  const consumer = new Kafka(config).consumer({ groupId: `reader-${randomBytes(4).toString("hex")}`, maxBytes: 16 << 20 });
  const records: Record[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          const headers: { [name: string]: string } = {};
          for (const [name, value] of Object.entries(m.headers ?? {})) headers[name] = String(value);
          records.push({ partition: batch.partition, key: m.key!.toString(), value: m.value!.toString(), headers });
        }
      },
    });
    await eventually(`${atLeast} records in ${topic}`, () => records.length >= atLeast, timeoutMs, 100);
    await sleep(1_000); // anything beyond (duplicates) arrives too
  } finally {
    await consumer.disconnect();
  }
  return records;
}

/**
 * Every stream event is in the topic; in each Kafka partition the first
 * copies of events come in stream-offset order 0, 1, 2, … (per-key order,
 * nothing skipped); returns how many records are duplicates.
 */
async function expectForwarded(db: TestDatabase, stream: string, records: Record[]): Promise<number> {
  const ids = new Set((await db.sql<{ id: string }[]>`select id from tributary.events where stream = ${stream}`).map((r) => r.id));
  const seen = new Set<string>();
  const nextOffset = new Map<number, number>();
  let duplicates = 0;
  for (const r of records) {
    const id = r.headers["tributary-id"]!;
    if (seen.has(id)) {
      duplicates++;
      continue;
    }
    seen.add(id);
    const partition = Number(r.headers["tributary-partition"]);
    const offset = Number(r.headers["tributary-offset"]);
    expect(r.partition, "stream partition p lands in Kafka partition p").toBe(partition);
    expect(offset, `partition ${partition}: first copy of offset ${offset} out of order`).toBe(nextOffset.get(partition) ?? 0);
    nextOffset.set(partition, offset + 1);
  }
  expect(seen.size).toBe(ids.size);
  for (const id of ids) expect(seen.has(id)).toBe(true);
  return duplicates;
}

describeKafka("kafka bridge", (kafka) => {
  let db: TestDatabase;
  let relay: RelayHandle | undefined;
  const bridges: BridgeHandle[] = [];
  let fixture: Fixture;

  beforeAll(async () => {
    fixture = await Fixture.build(new URL("./support/bridge-child.ts", import.meta.url), "forwarding");
  });
  afterAll(async () => {
    await fixture?.dispose();
  });
  afterEach(async () => {
    await Promise.allSettled(bridges.splice(0).map((b) => b.stop()));
    await relay?.stop();
    relay = undefined;
    await db?.drop();
  });

  const setUp = async (stream: string, partitions: number) => {
    db = await createTestDatabase(backend);
    await createStream(db.sql, stream, partitions);
    relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
  };
  const topic = (stream: string) => `${stream}-${randomBytes(3).toString("hex")}`;

  it("forwards 100,000 events over 8 partitions through 3 kill -9s of the bridge and a 10 s Kafka outage: nothing lost, order kept", async (ctx) => {
    const broker = await dedicatedKafkaBroker(ctx);
    await setUp("orders", 8);
    const prefix = `t${randomBytes(3).toString("hex")}-`;
    const env = { DATABASE_URL: db.url, STREAMS: "orders", BROKERS: broker.brokers.join(","), BATCH_SIZE: "500", SESSION_TIMEOUT_MS: "2000", TOPIC_PREFIX: prefix };
    let child = fixture.start("bridge-0", env);
    await child.waitJoined(60_000);
    const appending = appendEvents(db, "orders", 100_000);
    for (let kill = 1; kill <= 3; kill++) {
      await sleep(2_000);
      await child.kill();
      if (kill === 2) {
        // Kafka goes away for 10 s with the bridge running: it must wait, not skip.
        child = fixture.start(`bridge-${kill}`, env);
        await child.waitJoined(60_000);
        await broker.kill();
        await sleep(10_000);
        await broker.restart();
        continue;
      }
      child = fixture.start(`bridge-${kill}`, env);
      await child.waitJoined(60_000);
    }
    await appending;
    await waitForCount(db.sql, 100_000, 120_000);
    await eventually("the bridge group caught up", async () => {
      const [row] = await db.sql`select coalesce(sum(lag), -1)::int as lag from tributary.group_lag where group_name = 'tributary-bridge'`;
      return row?.lag === 0;
    }, 180_000, 500);
    const config: KafkaConfig = { brokers: broker.brokers, logLevel: kafkajs.logLevel.NOTHING };
    const records = await readTopic(config, `${prefix}orders`, 100_000, 120_000);
    const duplicates = await expectForwarded(db, "orders", records);
    // Re-sent uncommitted tails only: at most a few batches per crash or outage (8 partitions × 500).
    expect(duplicates, child.log()).toBeLessThanOrEqual(4 * 8 * 500);
    await child.kill();
  }, 400_000);

  it("two bridges share the partitions and take over from each other", async () => {
    await setUp("shared", 8);
    const name = topic("shared");
    const config = { databaseUrl: db.url, streams: ["shared"], kafka: kafkaConfig(), topicMap: { shared: name }, createTopics: true, sessionTimeoutMs: 2_000, log: () => {} };
    const a = startBridge(config);
    bridges.push(a);
    await a.ready;
    const b = startBridge(config);
    bridges.push(b);
    await b.ready;
    await eventually("both bridges own partitions", async () => {
      const rows = await db.sql`select member_id, count(*)::int as n from tributary.group_assignments where group_name = 'tributary-bridge' and releasing_member is null group by 1`;
      return rows.length === 2 && rows.every((r) => r.n === 4);
    }, 20_000);
    await appendEvents(db, "shared", 2_000);
    await sleep(500);
    await a.stop();
    await appendEvents(db, "shared", 2_000);
    const records = await readTopic(kafkaConfig(), name, 4_000);
    await expectForwarded(db, "shared", records);
  }, 120_000);

  it("with a different partition count, places records by key (Kafka's murmur2), each key in order", async () => {
    await setUp("keyed", 8);
    const name = topic("keyed");
    const admin = new Kafka(kafkaConfig()).admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: name, numPartitions: 3 }], waitForLeaders: true });
    await admin.disconnect();
    const registry = new Registry();
    const bridge = startBridge({ databaseUrl: db.url, streams: ["keyed"], kafka: kafkaConfig(), topicMap: { keyed: name }, log: () => {}, metrics: registry });
    bridges.push(bridge);
    expect((await bridge.ready)[0]).toMatchObject({ streamPartitions: 8, topicPartitions: 3, samePartitioning: false });
    await appendEvents(db, "keyed", 1_000, 40);
    const records = await readTopic(kafkaConfig(), name, 1_000);
    const lastOffset = new Map<string, number>();
    for (const r of records) {
      expect(r.partition).toBe((murmur2(Buffer.from(r.key)) & 0x7fffffff) % 3);
      const offset = Number(r.headers["tributary-offset"]);
      expect(offset).toBeGreaterThan(lastOffset.get(r.key) ?? -1);
      lastOffset.set(r.key, offset);
      expect(r.headers.traceparent).toMatch(/^00-\d+$/); // the event's own headers travel as they are
      // The value is the event data's JSON; the id header names the event.
      expect(JSON.parse(r.value)).toEqual({ n: Number(r.headers.traceparent!.slice(3)) });
    }
    const [stored] = await db.sql<{ data: string; committed: Date }[]>`
      select data::text as data, committed_at as committed from tributary.events where id = ${records[0]!.headers["tributary-id"]!}::uuid`;
    expect(records[0]!.value).toBe(stored!.data);
    expect(records[0]!.headers["tributary-committed-at"]).toBe(stored!.committed.toISOString());

    // Its metrics: every record Kafka acknowledged, no failed send, and its group member caught up.
    const endpoint = await serveMetrics(registry, { port: 0 });
    try {
      let text = "";
      await eventually("the bridge's member committed past every event", async () => {
        text = await scrape(endpoint.url);
        return [0, 1, 2, 3, 4, 5, 6, 7].every((p) => sample(text, "tributary_consumer_lag_events", { group: "tributary-bridge", stream: "keyed", partition: String(p) }) === 0);
      });
      expect(sample(text, "tributary_bridge_records_sent_total", { stream: "keyed", topic: name })).toBe(1_000);
      expect(sample(text, "tributary_bridge_send_errors_total", { stream: "keyed", topic: name })).toBe(0);
      expect(sample(text, "tributary_bridge_send_duration_seconds_count", { topic: name })).toBeGreaterThanOrEqual(1);
      expect(await promtoolCheck(text)).toEqual({ code: 0, output: "" });
    } finally {
      await endpoint.close();
    }
  }, 120_000);

  it("a missing topic is an error naming it unless --create-topics, which creates it with the stream's partitions", async () => {
    await setUp("missing", 6);
    const name = topic("missing");
    const args = ["bridge", "--streams", "missing", "--brokers", kafka.brokers.join(","), "--topic-map", `missing=${name}`];
    const refused = await cli(args, db.url);
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(new RegExp(`Kafka topic '${name}' \\(for stream 'missing', 6 partitions\\) does not exist: create it with the stream's partition count, or run the bridge with --create-topics`));

    const created = startCli([...args, "--create-topics"], db.url);
    await eventually("the topic created", async () => {
      const admin = new Kafka(kafkaConfig()).admin();
      await admin.connect();
      try {
        const metadata = await admin.fetchTopicMetadata({ topics: [name] }).catch(() => null);
        return metadata?.topics[0]?.partitions.length === 6;
      } finally {
        await admin.disconnect();
      }
    }, 30_000, 200);
    created.child.kill("SIGTERM");
    expect((await created.exited).code).toBe(0);
  }, 120_000);

  it("unreachable brokers are retried with backoff and said so; SIGTERM still exits 0", async () => {
    await setUp("nowhere", 2);
    const run = startCli(["bridge", "--streams", "nowhere", "--brokers", "127.0.0.1:1"], db.url);
    await eventually("the retry log line", () => /Kafka unreachable .*; retrying with backoff/.test(run.output.stderr), 60_000, 100);
    run.child.kill("SIGTERM");
    expect((await run.exited).code).toBe(0);
  }, 90_000);

  it("bad credentials exit 2 saying the credentials were rejected", async (ctx) => {
    if (kafka.saslBrokers.length === 0 || !kafka.sasl) ctx.skip("this Kafka (TRIBUTARY_TEST_KAFKA_BROKERS) has no SASL listener");
    await setUp("secure", 2);
    const args = ["bridge", "--streams", "secure", "--brokers", kafka.saslBrokers.join(","), "--sasl-mechanism", "plain", "--sasl-username", kafka.sasl!.username, "--create-topics"];
    const rejected = await cli([...args, "--sasl-password", "wrong"], db.url);
    expect(rejected.code, rejected.stderr).toBe(2);
    expect(rejected.stderr).toMatch(/Kafka rejected the credentials .*: check --sasl-mechanism, --sasl-username and --sasl-password/);
    const accepted = startCli([...args, "--sasl-password", kafka.sasl!.password], db.url);
    await eventually("forwarding with the right password", () => /secure → secure/.test(accepted.output.stderr), 60_000, 100);
    accepted.child.kill("SIGTERM");
    expect((await accepted.exited).code).toBe(0);
  }, 120_000);
});

function startCli(args: string[], databaseUrl: string) {
  const { DATABASE_URL: _unset, ...env } = process.env;
  const child = spawn(process.execPath, ["apps/cli/bin/tributary.js", ...args], { cwd: root, env: { ...env, DATABASE_URL: databaseUrl }, stdio: ["ignore", "pipe", "pipe"] });
  const output = { stdout: "", stderr: "" };
  child.stdout.on("data", (c: Buffer) => (output.stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (output.stderr += c.toString()));
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on("exit", (code) => setImmediate(() => resolve({ code, stderr: output.stderr }))));
  return { child, output, exited };
}

async function cli(args: string[], databaseUrl: string, timeoutMs = 60_000) {
  const run = startCli(args, databaseUrl);
  const timer = setTimeout(() => run.child.kill("SIGKILL"), timeoutMs);
  try {
    return await run.exited;
  } finally {
    clearTimeout(timer);
  }
}

