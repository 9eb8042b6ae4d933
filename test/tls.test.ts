/**
 * Verified TLS to PostgreSQL, against TLS-only clusters the harness starts
 * with a CA of their own: the whole pipeline (migrate, relay with its
 * replication connection, append, tail) over sslmode=verify-full; and the two
 * drivers (postgres.js for SQL, node-postgres for replication) accepting and
 * refusing exactly the same servers for each sslmode; and the Kafka bridge
 * over a broker's SSL listener, verified with the broker's CA.
 */
import { readFileSync } from "node:fs";
import kafkajs, { logLevel } from "kafkajs";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { appendBatch, connectPostgres, createStream } from "@tributary/client";
import { pgClientConfig } from "@tributary/client/internals";
import { migrate } from "@tributary/migrate";
import { startRelay } from "@tributary/relay";
import { Cluster, findInstallation } from "@tributary/testkit";
import { eventually } from "./support/processes.ts";
import { killCliChildren, runCli, startCli } from "./support/cli.ts";
import { dedicatedKafkaBroker, describeKafka } from "./support/kafka.ts";

const installation = findInstallation("embedded18");
if ("missing" in installation) throw new Error(installation.missing);

/** A: certificate for localhost and 127.0.0.1. B: its own CA, certificate for localhost only. */
let a: Cluster;
let b: Cluster;

beforeAll(async () => {
  [a, b] = await Promise.all([
    Cluster.start(installation, { tls: true }),
    Cluster.start(installation, { tls: { altNames: ["DNS:localhost"] } }),
  ]);
});
afterAll(async () => {
  await Promise.all([a?.destroy(), b?.destroy()]);
});
afterEach(() => killCliChildren());

function url(cluster: Cluster, host: string, query: Record<string, string>, database = "postgres"): string {
  return `postgres://postgres@${host}:${cluster.port}/${database}?${new URLSearchParams(query)}`;
}

/** Connects with postgres.js and with node-postgres; each says "ok" (and whether TLS is on) or its error. */
async function bothDrivers(target: string): Promise<{ postgresjs: string; pg: string }> {
  const sql = connectPostgres(target, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  const postgresjs = await sql<{ ssl: boolean }[]>`select ssl from pg_stat_ssl where pid = pg_backend_pid()`
    .then(([row]) => (row!.ssl ? "ok, tls" : "ok, plaintext"), (error: Error) => `refused: ${error.message}`)
    .finally(() => sql.end({ timeout: 1 }));
  const client = new pg.Client(pgClientConfig(target, { preferTls: true }));
  const viaPg = await client.connect()
    .then(() => client.query<{ ssl: boolean }>("select ssl from pg_stat_ssl where pid = pg_backend_pid()"))
    .then((result) => (result.rows[0]!.ssl ? "ok, tls" : "ok, plaintext"), (error: Error) => `refused: ${error.message}`)
    .finally(() => client.end().catch(() => {}));
  return { postgresjs, pg: viaPg };
}

describe("PostgreSQL over verified TLS", () => {
  it("migrate, relay (SQL and replication connections), append and tail work end to end over sslmode=verify-full", async () => {
    const admin = connectPostgres(a.url, { max: 1, onnotice: () => {} });
    await admin`create database pipeline`;
    await admin.end();
    const target = url(a, "localhost", { sslmode: "verify-full", sslrootcert: a.tls!.caFile }, "pipeline");
    const env = { DATABASE_URL: target };

    const migrated = await runCli(["migrate", "--slot", "tls_slot"], env);
    expect(migrated.code, migrated.stderr).toBe(0);
    const relay = startCli(["relay", "--slot", "tls_slot"], env);
    const tail = startCli(["tail", "orders", "--from", "earliest"], env);

    const sql = connectPostgres(target, { max: 2, onnotice: () => {} });
    try {
      await appendBatch(sql, Array.from({ length: 5 }, (_, i) => ({ stream: "orders", key: `o${i}`, type: "OrderPlaced", data: { i } })));
      const lines = () => tail.output.stdout.split("\n").filter((l) => l !== "");
      await eventually(`5 events through the relay to tail (relay: ${relay.output.stderr}; tail: ${tail.output.stderr})`, () => lines().length >= 5, 30_000);
      expect(lines().map((l) => (JSON.parse(l) as { key: string }).key).sort()).toEqual(["o0", "o1", "o2", "o3", "o4"]);

      // Every client connection of the pipeline is encrypted, the relay's walsender included
      // (the cluster refuses plaintext anyway: this shows which connections there were).
      const sessions = await sql<{ backend_type: string; application_name: string; ssl: boolean }[]>`
        select a.backend_type, a.application_name, s.ssl
          from pg_stat_activity a join pg_stat_ssl s using (pid)
         where a.datname = 'pipeline' and a.pid <> pg_backend_pid()`;
      expect(sessions.find((s) => s.backend_type === "walsender"), JSON.stringify(sessions)).toMatchObject({ application_name: "tributary-relay:tls_slot", ssl: true });
      expect(sessions.filter((s) => !s.ssl)).toEqual([]);
    } finally {
      await sql.end({ timeout: 1 });
    }
  });

  it("postgres.js and node-postgres accept and refuse the same servers for each sslmode", async () => {
    const caA = a.tls!.caFile;
    const caB = b.tls!.caFile;
    const cases: Array<[string, string, RegExp]> = [
      ["verify-full, host name in the certificate", url(a, "localhost", { sslmode: "verify-full", sslrootcert: caA }), /^ok, tls$/],
      ["verify-full, IP address in the certificate", url(a, "127.0.0.1", { sslmode: "verify-full", sslrootcert: caA }), /^ok, tls$/],
      ["verify-full, another CA", url(b, "localhost", { sslmode: "verify-full", sslrootcert: caA }), /^refused: .*(self[- ]signed|unable to verify|unable to get)/i],
      ["verify-ca, another CA", url(b, "127.0.0.1", { sslmode: "verify-ca", sslrootcert: caA }), /^refused: .*(self[- ]signed|unable to verify|unable to get)/i],
      ["verify-full, IP address not in the certificate", url(b, "127.0.0.1", { sslmode: "verify-full", sslrootcert: caB }), /^refused: .*(IP: 127\.0\.0\.1 is not in the cert's list|altnames)/i],
      ["verify-ca, IP address not in the certificate (the name is not checked)", url(b, "127.0.0.1", { sslmode: "verify-ca", sslrootcert: caB }), /^ok, tls$/],
      ["require with a root certificate is verify-ca (libpq)", url(b, "127.0.0.1", { sslmode: "require", sslrootcert: caA }), /^refused: /],
      ["require without a root certificate: encrypted, unverified", url(b, "127.0.0.1", { sslmode: "require" }), /^ok, tls$/],
      ["prefer (libpq's default): encrypted when the server offers it", url(b, "127.0.0.1", {}), /^ok, tls$/],
      ["disable: the server refuses plaintext", url(a, "localhost", { sslmode: "disable" }), /^refused: .*pg_hba\.conf rejects connection .*no encryption/],
    ];
    const results = await Promise.all(cases.map(async ([name, target]) => [name, await bothDrivers(target)] as const));
    for (const [[name, , expected], [, result]] of cases.map((c, i) => [c, results[i]!] as const)) {
      expect(result.postgresjs, `postgres.js, ${name}`).toMatch(expected);
      expect(result.pg, `node-postgres, ${name}`).toMatch(expected);
    }
  });

  it("the CLI refuses a wrong CA, a certificate without the host, plaintext, and an unreadable CA file, saying which", async () => {
    const [wrongCa, wrongHost, plaintext, missingFile, badMode] = await Promise.all([
      runCli(["status"], { DATABASE_URL: url(b, "localhost", { sslmode: "verify-full", sslrootcert: a.tls!.caFile }) }),
      runCli(["status"], { DATABASE_URL: url(b, "127.0.0.1", { sslmode: "verify-full", sslrootcert: b.tls!.caFile }) }),
      runCli(["status"], { DATABASE_URL: url(a, "localhost", { sslmode: "disable" }) }),
      runCli(["status"], { DATABASE_URL: url(a, "localhost", { sslmode: "verify-full", sslrootcert: "/nonexistent/ca.pem" }) }),
      runCli(["status"], { DATABASE_URL: url(a, "localhost", { sslmode: "verify-everything" }) }),
    ]);
    expect(wrongCa.code, wrongCa.stderr).toBe(1);
    expect(wrongCa.stderr).toMatch(/^tributary status: .*(self[- ]signed certificate|unable to verify)/m);
    expect(wrongHost.code, wrongHost.stderr).toBe(1);
    expect(wrongHost.stderr).toMatch(/^tributary status: .*IP: 127\.0\.0\.1 is not in the cert's list/m);
    expect(plaintext.code, plaintext.stderr).toBe(1);
    expect(plaintext.stderr).toMatch(/^tributary status: pg_hba\.conf rejects connection .* no encryption/m);
    expect(missingFile.code, missingFile.stderr).toBe(1);
    expect(missingFile.stderr).toMatch(/^tributary status: sslrootcert=\/nonexistent\/ca\.pem: cannot read the CA file \(ENOENT\)/m);
    expect(badMode.code, badMode.stderr).toBe(1);
    expect(badMode.stderr).toMatch(/^tributary status: sslmode=verify-everything is not a TLS mode: use disable, allow, prefer, require, verify-ca or verify-full/m);
  });
});

describeKafka("the Kafka bridge over verified TLS", () => {
  it("forwards over the broker's SSL listener verified with --ssl-ca; a broker the CA did not sign is refused, saying why", async (ctx) => {
    const broker = await dedicatedKafkaBroker(ctx, { tls: true });
    const admin = connectPostgres(a.url, { max: 1, onnotice: () => {} });
    await admin`create database bridged`;
    await admin.end();
    const target = url(a, "localhost", { sslmode: "verify-full", sslrootcert: a.tls!.caFile }, "bridged");
    const sql = connectPostgres(target, { max: 2, onnotice: () => {} });
    await migrate(sql, { slotName: "bridged" });
    const relay = startRelay({ databaseUrl: target, slotName: "bridged", log: () => {} });
    try {
      await createStream(sql, "payments", 2);
      await appendBatch(sql, Array.from({ length: 4 }, (_, i) => ({ stream: "payments", key: `p${i}`, type: "Paid", data: { i } })));
      const args = ["bridge", "--streams", "payments", "--brokers", broker.sslBrokers.join(","), "--create-topics"];

      const wrongCa = startCli([...args, "--ssl-ca", a.tls!.caFile, "--group", "wrong-ca"], { DATABASE_URL: target });
      await eventually("the TLS refusal in the log", () => /Kafka unreachable: its TLS certificate was not accepted \(.*(self[- ]signed certificate|unable to verify|unable to get).*\): check --ssl-ca .*; retrying with backoff/.test(wrongCa.output.stderr), 60_000, 100);
      wrongCa.child.kill("SIGTERM");
      expect((await wrongCa.exited).code).toBe(0);

      const bridge = startCli([...args, "--ssl-ca", broker.tlsCaFile], { DATABASE_URL: target });
      await eventually("forwarding", () => /payments → payments/.test(bridge.output.stderr), 60_000, 100);
      const kafka = new kafkajs.Kafka({ clientId: "tls-reader", brokers: broker.sslBrokers, ssl: { ca: [readFileSync(broker.tlsCaFile, "utf8")], rejectUnauthorized: true }, logLevel: logLevel.NOTHING });
      const consumer = kafka.consumer({ groupId: "tls-reader" });
      const keys: string[] = [];
      await consumer.connect();
      try {
        await consumer.subscribe({ topics: ["payments"], fromBeginning: true });
        await consumer.run({ eachMessage: async ({ message }) => void keys.push(message.key!.toString()) });
        await eventually("4 records read back over TLS", () => keys.length >= 4, 60_000, 100);
      } finally {
        await consumer.disconnect();
      }
      expect(keys.sort()).toEqual(["p0", "p1", "p2", "p3"]);
      bridge.child.kill("SIGTERM");
      expect((await bridge.exited).code).toBe(0);
    } finally {
      await relay.stop();
      await sql.end({ timeout: 1 });
    }
  }, 180_000);
});
