/**
 * Starts one shared throwaway cluster per PostgreSQL installation for the
 * whole run (tests create their own databases in them). Fault-injection tests
 * that restart or kill a server start their own cluster instead.
 *
 * Also one shared Kafka broker (KRaft, from the cached Maven Central jars),
 * started alongside the clusters. Tests that take Kafka down start their own
 * broker (test/support/kafka.ts): the shared one serves other files at once.
 *
 * TRIBUTARY_TEST_DATABASE_URL: use that server instead of starting clusters.
 * TRIBUTARY_REQUIRE_WAL2JSON=1: a missing wal2json fails the run, not a skip.
 * TRIBUTARY_TEST_KAFKA_BROKERS: use that Kafka instead of starting a broker.
 * TRIBUTARY_REQUIRE_KAFKA=1: no way to get Kafka fails the run, not a skip.
 */
import type { TestProject } from "vitest/node";
import { Cluster, findInstallation, KafkaBroker, kafkaAvailability, kafkaJars, type ServerKind } from "@tributary/testkit";
import type { ProvidedKafka } from "./kafka.ts";

const clusters: Cluster[] = [];
let kafkaBroker: KafkaBroker | null = null;

declare module "vitest" {
  export interface ProvidedContext {
    servers: Array<{ kind: ServerKind | "external"; url: string; version: number; hasWal2json: boolean; binDir: string | null; dataDir: string | null }>;
    kafka: ProvidedKafka;
  }
}

export async function setup(project: TestProject) {
  const kafka = sharedKafka(); // the JVM starts while the clusters do
  kafka.catch(() => {}); // its failure is reported below, not as an unhandled rejection
  try {
    await setupServers(project);
  } catch (error) {
    await kafka.catch(() => {});
    await kafkaBroker?.stop();
    throw error;
  }
  project.provide("kafka", await kafka);
}

async function sharedKafka(): Promise<ProvidedKafka> {
  const required = process.env.TRIBUTARY_REQUIRE_KAFKA === "1";
  const missing = (reason: string): ProvidedKafka => {
    if (required) throw new Error(`TRIBUTARY_REQUIRE_KAFKA=1 but ${reason}`);
    return { kind: "missing", reason };
  };
  const availability = kafkaAvailability();
  if (availability.kind === "missing") return missing(availability.reason);
  if (availability.kind === "env") {
    const local = kafkaAvailability({ useEnv: false });
    return { kind: "env", brokers: availability.brokers, saslBrokers: [], sasl: null, dedicatedMissing: local.kind === "missing" ? local.reason : null };
  }
  try {
    await kafkaJars();
  } catch (error) {
    return missing(`the Kafka jars could not be fetched from Maven Central: ${(error as Error).message}`);
  }
  kafkaBroker = await KafkaBroker.start();
  const { brokers, saslBrokers, sasl } = kafkaBroker;
  return { kind: "local", brokers, saslBrokers, sasl, dedicatedMissing: null };
}

async function setupServers(project: TestProject) {
  const external = process.env.TRIBUTARY_TEST_DATABASE_URL;
  if (external) {
    const postgres = (await import("postgres")).default;
    const sql = postgres(external, { max: 1, onnotice: () => {} });
    const [v] = await sql<{ v: string }[]>`select current_setting('server_version_num') as v`;
    const plugins = await sql`select 1 from pg_available_extensions where name = 'wal2json'`.catch(() => []);
    await sql.end();
    project.provide("servers", [{ kind: "external", url: external, version: Math.floor(Number(v!.v) / 10000), hasWal2json: plugins.length > 0, binDir: null, dataDir: null }]);
    return;
  }
  const servers = [];
  for (const kind of ["embedded18", "system15"] as const) {
    const installation = findInstallation(kind);
    if ("missing" in installation) {
      throw new Error(`PostgreSQL for the ${kind} backend is missing: ${installation.missing}`);
    }
    // Two test files run at once on each shared server (vitest.config.ts
    // maxWorkers), and some hold many sessions (queue-workers: 16 worker
    // processes of 4 connections; privileges: a pool per role and a relay):
    // together they passed the default 100 and a login was refused (53300).
    const cluster = await Cluster.start(installation, { settings: { max_connections: 300 } });
    clusters.push(cluster);
    servers.push({ kind, url: cluster.url, version: installation.version, hasWal2json: installation.hasWal2json, binDir: installation.binDir, dataDir: cluster.dataDir });
  }
  if (process.env.TRIBUTARY_REQUIRE_WAL2JSON === "1" && !servers.some((s) => s.hasWal2json)) {
    throw new Error("TRIBUTARY_REQUIRE_WAL2JSON=1 but no server has wal2json: apt-get install -y postgresql-15-wal2json");
  }
  project.provide("servers", servers);
}

export async function teardown() {
  await Promise.all([...clusters.map((c) => c.destroy()), kafkaBroker?.stop()]);
}
