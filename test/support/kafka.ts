/**
 * Kafka for tests: the shared broker global setup provides (or the cluster
 * TRIBUTARY_TEST_KAFKA_BROKERS names), and brokers of a test's own for tests
 * that take Kafka down — the shared broker serves other test files at the
 * same time, so stopping it would fail them.
 */
import { randomBytes } from "node:crypto";
import { logLevel, type KafkaConfig } from "kafkajs";
import { describe, inject, it, type TestContext } from "vitest";
import { KafkaBroker, type KafkaBrokerOptions, type KafkaSaslCredentials } from "@tributary/testkit";

/** What global setup provides as `kafka`. */
export type ProvidedKafka =
  | {
      readonly kind: "local" | "env";
      readonly brokers: string[];
      /** SASL_PLAINTEXT (PLAIN) listener and its user; empty and null for TRIBUTARY_TEST_KAFKA_BROKERS. */
      readonly saslBrokers: string[];
      readonly sasl: KafkaSaslCredentials | null;
      /** Why this machine cannot start a broker of a test's own, or null when it can. */
      readonly dedicatedMissing: string | null;
    }
  | { readonly kind: "missing"; readonly reason: string };

export type SharedKafka = Extract<ProvidedKafka, { kind: "local" | "env" }>;

/** describe() with the shared Kafka, or, without one, a skipped test that says how to get one. */
export function describeKafka(title: string, body: (kafka: SharedKafka) => void): void {
  const kafka = inject("kafka");
  if (kafka.kind === "missing") {
    describe(title, () => it("needs a Kafka broker", (ctx) => ctx.skip(kafka.reason)));
    return;
  }
  describe(title, () => body(kafka));
}

/** A kafkajs config for the shared broker (PLAINTEXT), quiet, with a fresh client id; `overrides` win. */
export function kafkaConfig(overrides: Partial<KafkaConfig> = {}): KafkaConfig {
  const kafka = inject("kafka");
  if (kafka.kind === "missing") throw new Error(kafka.reason);
  return { clientId: `tributary-test-${randomBytes(3).toString("hex")}`, brokers: kafka.brokers, logLevel: logLevel.NOTHING, ...overrides };
}

/**
 * A broker of this test's own (free ports, fresh data), stopped when the test
 * ends; for tests that kill, pause or restart Kafka. Skips the test when this
 * machine cannot run one (a failure under TRIBUTARY_REQUIRE_KAFKA=1).
 */
export async function dedicatedKafkaBroker(ctx: TestContext, options?: KafkaBrokerOptions): Promise<KafkaBroker> {
  const kafka = inject("kafka");
  const missing = kafka.kind === "missing" ? kafka.reason : kafka.dedicatedMissing;
  if (missing !== null) {
    if (process.env.TRIBUTARY_REQUIRE_KAFKA === "1") throw new Error(`TRIBUTARY_REQUIRE_KAFKA=1 but this test starts its own broker: ${missing}`);
    ctx.skip(`this test starts its own Kafka broker: ${missing}`);
  }
  const broker = await KafkaBroker.start(options);
  ctx.onTestFinished(() => broker.stop());
  return broker;
}
