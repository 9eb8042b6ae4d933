/**
 * Secrets: the CLI takes the database password from a file or the
 * environment (DATABASE_URL_FILE, --database-url-file, PGPASSWORD,
 * PGPASSFILE) for the SQL and the replication connections alike, warns when a
 * password sits on its command line, and never prints a password: every
 * command, against a server that accepts it, one that rejects it, and none.
 */
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { appendBatch, connectPostgres } from "@tributary/client";
import { Cluster, findInstallation } from "@tributary/testkit";
import { eventually } from "./support/processes.ts";
import { killCliChildren, runCli, startCli, type CliRun } from "./support/cli.ts";

const installation = findInstallation("embedded18");
if ("missing" in installation) throw new Error(installation.missing);

// Unique strings: if one shows up in any output, a password leaked.
const PASSWORD = "Pw-marker-7f3a9c1e";
const WRONG = "Pw-wrong-b81d44e2";
let cluster: Cluster;
let dir: string;

beforeAll(async () => {
  // Role `secretive` must give its password (scram); everything else stays trust.
  cluster = await Cluster.start(installation, { hba: ["host all secretive 127.0.0.1/32 scram-sha-256"] });
  const admin = connectPostgres(cluster.url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create role secretive login superuser replication password '${PASSWORD}'`);
  await admin.end();
  dir = mkdtempSync(join(tmpdir(), "tributary-secrets-"));
});
afterAll(async () => {
  await cluster?.destroy();
});
afterEach(() => killCliChildren());

const at = (password: string | null, port = cluster.port) =>
  `postgres://secretive${password === null ? "" : `:${password}`}@127.0.0.1:${port}/postgres`;

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  chmodSync(path, 0o600);
  return path;
}

function expectNoSecret(runs: Record<string, Pick<CliRun, "stdout" | "stderr">>): void {
  for (const [name, run] of Object.entries(runs)) {
    for (const secret of [PASSWORD, WRONG]) {
      expect(run.stdout.includes(secret) || run.stderr.includes(secret), `${name} printed a password:\n${run.stdout}\n${run.stderr}`).toBe(false);
    }
  }
}

describe("secrets", () => {
  it("migrate, relay, tail and status take the password from DATABASE_URL_FILE, --database-url-file, PGPASSWORD or PGPASSFILE; the relay's replication connection too", async () => {
    const urlFile = file("database-url", `${at(PASSWORD)}\n`);
    const passFile = file("pgpass", `127.0.0.1:${cluster.port}:postgres:secretive:${PASSWORD}\n`);
    const migrated = await runCli(["migrate", "--database-url-file", urlFile]);
    expect(migrated.code, migrated.stderr).toBe(0);

    // No password in the URL: the relay's SQL pool and its replication connection read PGPASSFILE.
    const relay = startCli(["relay"], { DATABASE_URL: at(null), PGPASSFILE: passFile });
    const tail = startCli(["tail", "orders", "--from", "earliest"], { DATABASE_URL: at(null), PGPASSWORD: PASSWORD });
    const sql = connectPostgres(at(PASSWORD), { max: 1, onnotice: () => {} });
    try {
      await appendBatch(sql, [{ stream: "orders", key: "o1", type: "OrderPlaced", data: { n: 1 } }]);
      await eventually("the event through the relay to tail", () => tail.output.stdout.includes('"key":"o1"'), 30_000);
      const [walsender] = await sql<{ usename: string }[]>`select usename from pg_stat_replication where application_name = 'tributary-relay:tributary'`;
      expect(walsender?.usename).toBe("secretive");
    } finally {
      await sql.end({ timeout: 1 });
    }
    const status = await runCli(["status"], { DATABASE_URL_FILE: urlFile });
    expect(status.code, status.stderr).toBe(0);
    relay.child.kill("SIGTERM");
    tail.child.kill("SIGTERM");
    expectNoSecret({ migrated, relay: relay.output, tail: tail.output, status });
  });

  it("a password in --database-url works but draws a warning that says how to pass it instead; a password file others can read is refused", async () => {
    const looseFile = join(dir, "pgpass-loose");
    writeFileSync(looseFile, `*:*:*:secretive:${PASSWORD}\n`);
    chmodSync(looseFile, 0o644);
    const [flagged, loose] = await Promise.all([
      runCli(["migrate", "--database-url", at(PASSWORD)], {}, 60_000),
      runCli(["status"], { DATABASE_URL: at(null), PGPASSFILE: looseFile }),
    ]);
    expect(flagged.code, flagged.stderr).toBe(0);
    expect(flagged.stderr).toMatch(/^warning: --database-url carries a password, which any user of this machine can read \(ps, \/proc\): set DATABASE_URL, use --database-url-file PATH/m);
    expect(loose.code, loose.stderr).toBe(1);
    expect(loose.stderr).toMatch(/the password file .*pgpass-loose can be read by group or others: chmod 600 /);
    expectNoSecret({ flagged, loose });
  });

  it("no command prints the password, whether the server rejects it, accepts it, or cannot be reached", async () => {
    const unreachable = at(PASSWORD, 1);
    const wrong = at(WRONG);
    // Three at a time: each boots the CLI (about a second of CPU) on a shared machine.
    const runs = [
      ...(await Promise.all([
        runCli(["migrate"], { DATABASE_URL: wrong }, 60_000),
        runCli(["status"], { DATABASE_URL: wrong }, 60_000),
        runCli(["tail", "orders", "--from", "earliest"], { DATABASE_URL: wrong }, 20_000),
      ])),
      ...(await Promise.all([
        runCli(["migrate"], { DATABASE_URL: unreachable }, 60_000),
        runCli(["status", "--database-url", unreachable], {}, 60_000),
        runCli(["groups"], { DATABASE_URL: unreachable }, 60_000),
      ])),
    ];
    // A rejected password cannot heal: the relay stops with exit 1 and the fix, not retrying for ever.
    const relay = await runCli(["relay"], { DATABASE_URL: wrong });
    expect(relay.code, relay.stderr).toBe(1);
    expect(relay.stderr).toMatch(/refused the relay's login: password authentication failed for user "secretive".*Check the user and password/);
    expect(relay.stderr).not.toMatch(/reconnecting/);
    // A long-running command retrying: the bridge against an unreachable database.
    const bridge = startCli(["bridge", "--streams", "orders", "--brokers", "127.0.0.1:1", "--sasl-mechanism", "plain", "--sasl-username", "u", "--sasl-password-file", file("kafka-password", `${PASSWORD}\n`)], { DATABASE_URL: unreachable });
    await eventually("the bridge's error or retry line", () => bridge.output.stderr.length > 0, 30_000);
    await new Promise((r) => setTimeout(r, 3000)); // a few more retries
    bridge.child.kill("SIGTERM");
    for (const run of runs.slice(0, 2)) {
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr).toMatch(/password authentication failed for user "secretive"/);
    }
    for (const run of [runs[3]!, runs[4]!]) expect(run.code, run.stderr).not.toBe(0);
    expectNoSecret({
      "migrate (rejected)": runs[0]!, "status (rejected)": runs[1]!, "tail (rejected)": runs[2]!,
      "migrate (unreachable)": runs[3]!, "status (unreachable)": runs[4]!, "groups (unreachable)": runs[5]!,
      "relay (rejected)": relay, "bridge (unreachable)": bridge.output,
    });
  });
});
