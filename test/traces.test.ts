/**
 * Trace context from append to handler (packages/client trace-context.ts,
 * README "Traces"), with the OpenTelemetry SDK's in-memory exporter
 * registered as an application would: an append inside a span carries its
 * traceparent; a group member handles each event in a CONSUMER span linked
 * to it, with the messaging attributes, and the handler runs inside that
 * span; a batch handler's span links every event's producer; an SQL
 * caller's own traceparent is linked the same way.
 */
import { randomBytes } from "node:crypto";
import kafkajs from "kafkajs";
import { context, propagation, SpanKind, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { append, appendBatch, claim, consumer, createQueue, createStream, deadLetters, eventTraceContext, nack, redrive, send, sendBatch, tailStream, work, type Consumer, type StreamEvent } from "@tributary/client";
import { startBridge, type BridgeHandle } from "@tributary/kafka-bridge";
import { startRelay, type RelayHandle } from "@tributary/relay";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { describeKafka, kafkaConfig } from "./support/kafka.ts";
import { eventually } from "./support/processes.ts";

const backend = backends().find((b) => b.decoder === "pgoutput")!;
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = trace.getTracer("test-producer");
/** OpenTelemetry's globals as an application's SDK set-up registers them, and their removal. */
function registerTracing(): void {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
}
function unregisterTracing(): void {
  trace.disable();
  propagation.disable();
  context.disable();
}
const consumerSpans = (): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.CONSUMER);

describe("traces", () => {
  let db: TestDatabase;
  let relay: RelayHandle;
  const members: Consumer[] = [];

  beforeAll(async () => {
    registerTracing();
    db = await createTestDatabase(backend);
    relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
  });
  afterEach(async () => {
    await Promise.all(members.splice(0).map((m) => m.stop()));
    exporter.reset();
  });
  afterAll(async () => {
    await relay?.stop();
    await db?.drop();
    unregisterTracing();
  });

  it("an append inside a span carries its traceparent; the member handles the event in a CONSUMER span linked to it, the handler inside", async () => {
    await createStream(db.sql, "orders", 2);
    const producer = await tracer.startActiveSpan("place order", async (span) => {
      await db.sql.begin((tx) => append(tx, { stream: "orders", key: "o-1", type: "Placed", data: { total: 42 }, headers: { source: "shop" } }));
      span.end();
      return span.spanContext();
    });
    // An append outside any span adds nothing.
    await db.sql.begin((tx) => append(tx, { stream: "orders", key: "o-2", type: "Placed", data: {} }));
    const seen: Array<{ event: StreamEvent; activeSpanId: string | undefined }> = [];
    members.push(await consumer(db.sql, {
      group: "billing", streams: ["orders"], log: () => {},
      handler: (event) => void seen.push({ event, activeSpanId: trace.getActiveSpan()?.spanContext().spanId }),
    }));
    await eventually("both events are handled", () => seen.length === 2, 60_000);

    const traced = seen.find((s) => s.event.key === "o-1")!;
    expect(traced.event.headers).toEqual({ source: "shop", traceparent: `00-${producer.traceId}-${producer.spanId}-01` });
    expect(seen.find((s) => s.event.key === "o-2")!.event.headers).toEqual({});

    const spans = consumerSpans();
    expect(spans).toHaveLength(2);
    const span = spans.find((s) => s.attributes["messaging.message.id"] === traced.event.id)!;
    expect(span.name).toBe("process orders");
    expect(span.links.map((l) => l.context.spanId)).toEqual([producer.spanId]);
    expect(span.links[0]!.context.traceId).toBe(producer.traceId);
    expect(span.attributes).toMatchObject({
      "messaging.system": "tributary",
      "messaging.destination.name": "orders",
      "messaging.destination.partition.id": String(traced.event.partition),
      "messaging.consumer.group.name": "billing",
      "messaging.operation.type": "process",
      "tributary.offset": traced.event.offset,
    });
    // The handler ran inside its span: its own spans (a query's, say) are that span's children.
    expect(traced.activeSpanId).toBe(span.spanContext().spanId);
    expect(spans.find((s) => s !== span)!.links).toEqual([]);
  });

  it("a batch handler's span links every event's producer; a traceparent passed in SQL is linked too; a failing handler's span records the error", async () => {
    await createStream(db.sql, "payments", 1);
    const producers = await tracer.startActiveSpan("checkout", async (span) => {
      await db.sql.begin((tx) => appendBatch(tx, [1, 2, 3].map((n) => ({ stream: "payments", key: "k", type: "Paid", data: { n } }))));
      span.end();
      return [span.spanContext()];
    });
    const sqlTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    await db.sql`select tributary.append('payments', 'k', 'Paid', '{"n": 4}', ${db.sql.json({ traceparent: sqlTraceparent })})`;
    await eventually("the four payments are relayed", async () => (await db.sql`select 1 from tributary.events where stream = 'payments'`).length === 4, 60_000);
    let calls = 0;
    // One retry: the whole batch fails once, then goes through (the default schedule waits 100 ms).
    members.push(await consumer(db.sql, {
      group: "ledger", streams: ["payments"], log: () => {}, batchSize: 10, retries: 1,
      batchHandler: async () => {
        if (++calls === 1) throw new Error("first try refused");
      },
    }));
    await eventually("the batch is handled", () => consumerSpans().some((s) => s.status.code !== 2 && s.attributes["messaging.batch.message_count"] === 4), 60_000);
    const [failed, done] = [consumerSpans().find((s) => s.status.code === 2)!, consumerSpans().find((s) => s.status.code !== 2)!];
    expect(failed.status.message).toBe("first try refused");
    expect(failed.events.map((e) => e.name)).toContain("exception");
    const linked = done.links.map((l) => `${l.context.traceId}-${l.context.spanId}`);
    expect(linked).toEqual([...producers.flatMap((p) => [1, 2, 3].map(() => `${p.traceId}-${p.spanId}`)), "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"]);
  });

  it("a reader's loop body handles each event inside a CONSUMER span linked to its producer, ended when the loop asks for the next event", async () => {
    await createStream(db.sql, "audit", 1);
    const producer = await tracer.startActiveSpan("audit login", async (span) => {
      await db.sql.begin((tx) => appendBatch(tx, [1, 2].map((n) => ({ stream: "audit", key: "u", type: "Login", data: { n } }))));
      span.end();
      return span.spanContext();
    });
    const controller = new AbortController();
    const seen: Array<{ event: StreamEvent; parentSpanId: string | undefined; openSpans: number }> = [];
    for await (const event of tailStream(db.sql, { stream: "audit", from: "earliest", signal: controller.signal })) {
      // A span of the loop body's own, made in the event's context, is the reader span's child.
      const child = tracer.startSpan("write audit row", {}, eventTraceContext(event));
      child.end();
      seen.push({ event, parentSpanId: (child as unknown as ReadableSpan).parentSpanContext?.spanId, openSpans: consumerSpans().length });
      if (seen.length === 2) break;
    }
    const spans = consumerSpans();
    expect(spans).toHaveLength(2);
    // While the body handled an event, that event's span was still open: only earlier ones had ended.
    expect(seen.map((s) => s.openSpans)).toEqual([0, 1]);
    for (const [i, { event, parentSpanId }] of seen.entries()) {
      const span = spans[i]!;
      expect(span.name).toBe("process audit");
      expect(span.attributes).toMatchObject({
        "messaging.system": "tributary",
        "messaging.destination.name": "audit",
        "messaging.destination.partition.id": "0",
        "messaging.message.id": event.id,
        "tributary.offset": event.offset,
      });
      expect(span.links.map((l) => `${l.context.traceId}-${l.context.spanId}`)).toEqual([`${producer.traceId}-${producer.spanId}`]);
      expect(parentSpanId).toBe(span.spanContext().spanId);
    }
  });

  it("a queue worker handles a stream-fed message in a CONSUMER span linked to the producer of the event it carries, the handler inside", async () => {
    await createStream(db.sql, "signups", 1);
    await createQueue(db.sql, "welcome-mail", { stream: "signups" });
    const producer = await tracer.startActiveSpan("sign up", async (span) => {
      await db.sql.begin((tx) => append(tx, { stream: "signups", key: "u-1", type: "SignedUp", data: { email: "a@example.com" } }));
      span.end();
      return span.spanContext();
    });
    // The feeder, a group member of the stream, has spans of its own ("process signups").
    const workerSpans = () => consumerSpans().filter((s) => s.name === "process welcome-mail");
    const seen: Array<{ id: string; activeSpanId: string | undefined }> = [];
    const worker = await work(db.sql, "welcome-mail", (message) => void seen.push({ id: message.id, activeSpanId: trace.getActiveSpan()?.spanContext().spanId }), { log: () => {} });
    try {
      await eventually("the fed message is handled", () => seen.length === 1 && workerSpans().length === 1, 60_000);
    } finally {
      await worker.stop();
    }
    const [span] = workerSpans();
    expect(span!.attributes).toMatchObject({
      "messaging.system": "tributary",
      "messaging.destination.name": "welcome-mail",
      "messaging.operation.type": "process",
      "messaging.message.id": seen[0]!.id,
      "tributary.deliveries": 1,
      "tributary.stream": "signups",
    });
    expect(span!.links.map((l) => `${l.context.traceId}-${l.context.spanId}`)).toEqual([`${producer.traceId}-${producer.spanId}`]);
    expect(seen[0]!.activeSpanId).toBe(span!.spanContext().spanId);
  });

  it("a send (or sendBatch) inside a span carries its traceparent in the message's headers; the worker's span links it, the handler inside; an SQL sender's headers are checked and linked", async () => {
    await createQueue(db.sql, "invoices");
    const producer = await tracer.startActiveSpan("bill", async (span) => {
      await send(db.sql, "invoices", { n: 1 }, { headers: { tenant: "acme" } });
      await sendBatch(db.sql, "invoices", [{ payload: { n: 3 } }, { payload: { n: 4 }, headers: { tenant: "beta" } }]);
      span.end();
      return span.spanContext();
    });
    const sqlTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    await db.sql`select tributary.send('invoices', '{"n": 2}', ${db.sql.json({ headers: { traceparent: sqlTraceparent } })})`;
    await expect(db.sql`select tributary.send('invoices', '{}', '{"headers": {"retries": 3}}')`).rejects.toThrow(/header 'retries' is number, not text/);
    await expect(db.sql`select tributary.send('invoices', '{}', '{"headers": ["traceparent"]}')`).rejects.toThrow(/headers/);

    const seen: Array<{ n: number; headers: Record<string, string>; activeSpanId: string | undefined }> = [];
    const worker = await work<{ n: number }>(db.sql, "invoices", (message) => void seen.push({ n: message.payload.n, headers: { ...message.headers }, activeSpanId: trace.getActiveSpan()?.spanContext().spanId }), { log: () => {} });
    const workerSpans = () => consumerSpans().filter((s) => s.name === "process invoices");
    try {
      await eventually("every invoice is handled", () => seen.length === 4 && workerSpans().length === 4, 60_000);
    } finally {
      await worker.stop();
    }
    const first = seen.find((m) => m.n === 1)!;
    expect(first.headers).toEqual({ tenant: "acme", traceparent: `00-${producer.traceId}-${producer.spanId}-01` });
    expect(seen.find((m) => m.n === 3)!.headers).toEqual({ traceparent: `00-${producer.traceId}-${producer.spanId}-01` });
    expect(seen.find((m) => m.n === 4)!.headers).toEqual({ tenant: "beta", traceparent: `00-${producer.traceId}-${producer.spanId}-01` });
    const linked = (n: number) => {
      const span = workerSpans().find((s) => s.spanContext().spanId === seen.find((m) => m.n === n)!.activeSpanId)!;
      expect(span.attributes).toMatchObject({ "messaging.system": "tributary", "messaging.destination.name": "invoices", "tributary.deliveries": 1 });
      return span.links.map((l) => `${l.context.traceId}-${l.context.spanId}`);
    };
    for (const n of [1, 3, 4]) expect(linked(n)).toEqual([`${producer.traceId}-${producer.spanId}`]);
    expect(linked(2)).toEqual(["0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"]);
  });

  it("a dead letter keeps its message's headers and a redrive gives them back", async () => {
    await createQueue(db.sql, "refunds", { maxDeliveries: 1 });
    await send(db.sql, "refunds", { n: 1 }, { headers: { tenant: "acme" } });
    const [message] = await claim(db.sql, "refunds", "w-1");
    await nack(db.sql, "refunds", message!.receipt, { error: "refused" });
    const [dead] = await deadLetters(db.sql, "refunds");
    expect(dead!.headers).toEqual({ tenant: "acme" });
    await redrive(db.sql, "refunds");
    const [again] = await claim(db.sql, "refunds", "w-1");
    expect(again!.headers).toEqual({ tenant: "acme" });
  });
});

describeKafka("traces through the Kafka bridge", () => {
  let db: TestDatabase;
  let relay: RelayHandle;
  let bridge: BridgeHandle | undefined;
  beforeAll(async () => {
    registerTracing();
    db = await createTestDatabase(backend);
    relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
  });
  afterAll(async () => {
    await bridge?.stop();
    await relay?.stop();
    await db?.drop();
    unregisterTracing();
  });

  it("the bridge sends each batch in a CONSUMER span linked to every event's producer, and the Kafka records carry the traceparent", async () => {
    await createStream(db.sql, "shipments", 1);
    const producer = await tracer.startActiveSpan("ship", async (span) => {
      await db.sql.begin((tx) => appendBatch(tx, [1, 2, 3].map((n) => ({ stream: "shipments", key: `s-${n}`, type: "Shipped", data: { n } }))));
      span.end();
      return span.spanContext();
    });
    await eventually("the shipments are relayed", async () => (await db.sql`select 1 from tributary.events where stream = 'shipments'`).length === 3, 60_000);
    const topic = `shipments-${randomBytes(3).toString("hex")}`;
    bridge = startBridge({ databaseUrl: db.url, streams: ["shipments"], kafka: kafkaConfig(), topicMap: { shipments: topic }, createTopics: true, log: () => {} });
    await bridge.ready;
    const sent = () => consumerSpans().filter((s) => s.attributes["tributary.kafka.topic"] === topic && s.status.code !== 2);
    await eventually("the batch is sent", () => sent().length > 0, 60_000);
    const spans = sent();
    expect(spans[0]!.attributes).toMatchObject({
      "messaging.system": "tributary",
      "messaging.destination.name": "shipments",
      "messaging.consumer.group.name": "tributary-bridge",
      "messaging.destination.partition.id": "0",
    });
    const linked = spans.flatMap((s) => s.links.map((l) => `${l.context.traceId}-${l.context.spanId}`));
    expect(linked).toEqual([1, 2, 3].map(() => `${producer.traceId}-${producer.spanId}`));

    const records: string[] = [];
    const reader = new kafkajs.Kafka(kafkaConfig()).consumer({ groupId: `reader-${randomBytes(4).toString("hex")}` });
    await reader.connect();
    try {
      await reader.subscribe({ topics: [topic], fromBeginning: true });
      await reader.run({ eachMessage: async ({ message }) => void records.push(String(message.headers?.traceparent)) });
      await eventually("the three records are read", () => records.length >= 3, 60_000);
    } finally {
      await reader.disconnect();
    }
    expect(records.slice(0, 3)).toEqual([1, 2, 3].map(() => `00-${producer.traceId}-${producer.spanId}-01`));
  });
});
