/**
 * The `tributary` command line as a user runs it: `node apps/cli/bin/tributary.js`
 * in its own process. Help needs no database; a missing database is a usage
 * error (exit 2) that says how to give one; `migrate` migrates and prints a
 * summary; `status --json` is one JSON object for programs; `relay` relays
 * and stops cleanly on SIGTERM (exit 0) well within a deploy's grace period.
 */
import { afterEach, describe, expect, it } from "vitest";
import { append, createStream } from "@tributary/client";
import { readMigrations } from "@tributary/migrate";
import { startRelay } from "@tributary/relay";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { waitForCount } from "./support/streams.ts";
import { runCli as run, startCli as start, killCliChildren } from "./support/cli.ts";

const backend = backends()[0]!;

async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

afterEach(() => killCliChildren());

describe("tributary CLI", () => {
  // Each run boots the CLI (tsx + its dependencies, about a second of CPU): few runs, in parallel.
  it("prints usage for --help and migrate --help, without a database", async () => {
    const [top, migrate] = await Promise.all([run(["--help"]), run(["migrate", "--help"])]);
    for (const r of [top, migrate]) expect([r.code, r.stderr]).toEqual([0, ""]);
    expect(top.stdout).toMatch(/^Usage: tributary <command>/);
    for (const command of ["dev", "migrate", "relay", "status"]) expect(top.stdout).toMatch(new RegExp(`^  ${command} `, "m"));
    expect(top.stdout).toMatch(/DATABASE_URL/);
    expect(migrate.stdout).toMatch(/^Usage: tributary migrate \[--database-url URL\] \[--slot NAME\] \[--decoder pgoutput\|wal2json\]/);
    expect(migrate.stdout).toMatch(/--database-url URL +PostgreSQL to migrate \(default: \$DATABASE_URL\)/);
  });

  it("without DATABASE_URL, exits 2 and says to set DATABASE_URL or pass --database-url", async () => {
    const results = await Promise.all([run(["migrate"]), run(["relay"])]);
    for (const r of results) {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/DATABASE_URL/);
      expect(r.stderr).toMatch(/--database-url/);
    }
  });

  it("exits non-zero on an unknown command or flag, and shows the usage", async () => {
    const [command, flag] = await Promise.all([
      run(["frobnicate"]),
      run(["migrate", "--frobnicate"], { DATABASE_URL: "postgres://127.0.0.1:1/none" }),
    ]);
    expect(command.code).not.toBe(0);
    expect(command.stderr).toMatch(/unknown command 'frobnicate'/);
    expect(command.stderr).toMatch(/Usage: tributary <command>/);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/frobnicate/);
    expect(flag.stderr).toMatch(/Usage: tributary migrate/);
  });

  describe("against a database", () => {
    let db: TestDatabase;
    afterEach(async () => {
      await db?.drop();
    });

    it("migrate migrates a fresh database and prints a summary; again it applies nothing; a set-up error exits 1 with its message", async () => {
      db = await createTestDatabase(backend, { migrate: false });
      const first = await run(["migrate", "--slot", db.slotName], { DATABASE_URL: db.url });
      expect(first.code, first.stderr).toBe(0);
      const files = readMigrations().length;
      expect(first.stderr).toMatch(/^applied 0001_core\.sql$/m);
      expect(first.stderr).toMatch(new RegExp(`schema up to date \\(${files} applied, 0 already applied\\); slot '${db.slotName}' \\(pgoutput\\) ready`));
      const [slot] = await db.sql`select plugin from pg_replication_slots where slot_name = ${db.slotName}`;
      expect(slot?.plugin).toBe("pgoutput");
      const [migrations] = await db.sql<{ n: number }[]>`select count(*)::int as n from tributary.schema_migrations`;
      expect(migrations!.n).toBe(files);

      const [again, mismatch] = await Promise.all([
        run(["migrate", "--slot", db.slotName, "--database-url", db.url]),
        run(["migrate", "--slot", db.slotName, "--decoder", "wal2json"], { DATABASE_URL: db.url }),
      ]);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toContain(`schema up to date (0 applied, ${files} already applied)`);
      expect(mismatch.code).toBe(1);
      expect(mismatch.stderr).toMatch(/^tributary migrate: replication slot '.*' uses the pgoutput decoder, not wal2json\. Use --decoder pgoutput/m);
    });

    it("status --json prints one JSON object with the streams and the relays", async () => {
      db = await createTestDatabase(backend);
      await createStream(db.sql, "payments", 3);
      for (let i = 0; i < 5; i++) await append(db.sql, { stream: "orders", key: `o${i}`, type: "OrderPlaced", data: { i } });
      const relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
      try {
        await waitForCount(db.sql, 5, 30_000);
        const status = await run(["status", "--json", "--database-url", db.url]);
        expect(status.code, status.stderr).toBe(0);
        const lines = status.stdout.trimEnd().split("\n");
        expect(lines).toHaveLength(1);
        const parsed = JSON.parse(lines[0]!) as {
          streams: Array<{ stream: string; partitions: number; events: number }>;
          relays: Array<{ slot: string; plugin: string; active: boolean; lagBytes: number | null; checkpointLsn: string }>;
        };
        expect(parsed.streams).toEqual([
          { stream: "orders", partitions: 8, events: 5, retained: 5, lowWatermarks: Array(8).fill(0), retention: null, bytes: expect.any(Number) },
          { stream: "payments", partitions: 3, events: 0, retained: 0, lowWatermarks: [0, 0, 0], retention: null, bytes: expect.any(Number) },
        ]);
        expect(parsed.relays).toHaveLength(1);
        expect(parsed.relays[0]).toMatchObject({ slot: db.slotName, plugin: backend.decoder, active: true });
        expect(typeof parsed.relays[0]!.lagBytes).toBe("number");
        expect(parsed.relays[0]!.checkpointLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      } finally {
        await relay.stop();
      }
    });

    it("relay relays, and on SIGTERM exits 0 within 5 s and releases the slot", async () => {
      db = await createTestDatabase(backend);
      const relay = start(["relay", "--slot", db.slotName], { DATABASE_URL: db.url });
      await until(() => /active on slot/.test(relay.output.stderr), "the relay to become active");
      await append(db.sql, { stream: "orders", key: "o1", type: "OrderPlaced", data: {} });
      await waitForCount(db.sql, 1, 30_000);
      const slotActive = async () => {
        const [slot] = await db.sql<{ active: boolean }[]>`select active from pg_replication_slots where slot_name = ${db.slotName}`;
        return slot!.active;
      };
      expect(await slotActive()).toBe(true);

      const sent = performance.now();
      relay.child.kill("SIGTERM");
      const exit = await Promise.race([relay.exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
      const elapsed = performance.now() - sent;
      console.info(`tributary relay exited ${elapsed.toFixed(0)} ms after SIGTERM`);
      expect(exit, "the relay was still running 10 s after SIGTERM").not.toBeNull();
      expect(exit!.code, exit!.stderr).toBe(0);
      expect(exit!.signal).toBeNull();
      // The shutdown handler force-exits (also with 0) after 4.5 s: only a faster exit proves a clean stop.
      expect(elapsed).toBeLessThan(4500);
      expect(exit!.stderr).toMatch(/SIGTERM: stopping/);
      expect(exit!.stderr).not.toMatch(/error while stopping/);
      await until(async () => !(await slotActive()), "the slot to be released", 3000);
    });
  });
});
