/**
 * `tributary migrate` (packages/migrate) against real servers: it is
 * idempotent and safe to race, never re-applies or silently accepts an edited
 * migration, rolls back a failing one, and refuses set-ups that would lose
 * events — wal_level, a missing decoder, a lost slot (docs/ARCHITECTURE.md invariant 7),
 * a slot of the wrong decoder or of another database — with a message that
 * says what to do. The relay refuses the same conditions as fatal errors.
 */
import { appendFileSync, cpSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres, { type Sql } from "postgres";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { appendBatch } from "@tributary/client";
import type { Decoder } from "@tributary/core";
import { defaultMigrationsDir, migrate, MigrationError, readMigrations, type MigrationErrorCode } from "@tributary/migrate";
import { RelayFatalError, startRelay } from "@tributary/relay";
import { Cluster, findInstallation } from "@tributary/testkit";
import { backends, createTestDatabase, type Backend, type TestDatabase } from "./support/backends.ts";
import { waitForCount } from "./support/streams.ts";

/** The MigrationError a promise rejects with; fails the test when it resolves or throws anything else. */
async function migrationError(promise: Promise<unknown>, code: MigrationErrorCode): Promise<MigrationError> {
  try {
    await promise;
  } catch (error) {
    expect(error, (error as Error)?.message).toBeInstanceOf(MigrationError);
    expect((error as MigrationError).code, (error as Error).message).toBe(code);
    return error as MigrationError;
  }
  throw new Error(`expected migrate to fail with ${code}, but it succeeded`);
}

/** What `startRelay(...).done` rejects with, within `ms`. */
async function relayFatal(databaseUrl: string, slotName: string, options: { decoder?: Decoder } = {}, ms = 15_000): Promise<RelayFatalError> {
  const logs: string[] = [];
  const relay = startRelay({ databaseUrl, slotName, ...options, log: (m) => logs.push(m) });
  let timer: NodeJS.Timeout | undefined;
  try {
    const outcome = await Promise.race([
      relay.done.then(() => new Error("the relay stopped without an error"), (error: unknown) => error),
      new Promise<Error>((resolve) => {
        timer = setTimeout(() => resolve(new Error(`the relay did not stop within ${ms} ms; its log: ${logs.join(" | ")}`)), ms);
      }),
    ]);
    if (!(outcome instanceof RelayFatalError)) throw outcome;
    return outcome;
  } finally {
    clearTimeout(timer);
    await relay.stop();
  }
}

async function slotOf(sql: Sql, slotName: string): Promise<{ plugin: string; database: string; confirmed: string | null } | undefined> {
  const [slot] = await sql<{ plugin: string; database: string; confirmed: string | null }[]>`
    select plugin, database, confirmed_flush_lsn::text as confirmed from pg_replication_slots where slot_name = ${slotName}`;
  return slot;
}

async function appliedVersions(sql: Sql): Promise<number[]> {
  const rows = await sql<{ version: number }[]>`select version from tributary.schema_migrations order by version`;
  return rows.map((r) => r.version);
}

async function checkpointRows(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`select count(*)::int as n from tributary.relay_checkpoints`;
  return row!.n;
}

/** A migrations folder of our own: a copy of migrations/ we may edit. */
function copyOfMigrations(): string {
  const dir = mkdtempSync(join(tmpdir(), "tributary-migrations-"));
  cpSync(defaultMigrationsDir, dir, { recursive: true });
  return dir;
}

const servers = inject("servers");
const pgoutputOnly = servers.find((s) => !s.hasWal2json);
const firstBackend = backends()[0]!;

describe("migrate", () => {
  let db: TestDatabase;
  const dirs: string[] = [];
  const clients: Sql[] = [];
  const client = (url: string) => {
    const sql = postgres(url, { max: 2, onnotice: () => {} });
    clients.push(sql);
    return sql;
  };

  beforeEach(async () => {
    db = await createTestDatabase(firstBackend, { migrate: false });
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.end({ timeout: 1 })));
    await db.drop();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("is idempotent: a second run applies nothing and keeps the same slot", async () => {
    const first = await migrate(db.sql, { slotName: db.slotName });
    expect(first.applied.map((f) => f.version)).toEqual(readMigrations().map((f) => f.version));
    expect(first.alreadyApplied).toBe(0);
    const second = await migrate(db.sql, { slotName: db.slotName });
    expect(second.applied).toEqual([]);
    expect(second.alreadyApplied).toBe(readMigrations().length);
    expect(second.slot.confirmedFlushLsn).toBe(first.slot.confirmedFlushLsn);
    expect(await appliedVersions(db.sql)).toEqual(readMigrations().map((f) => f.version));
    expect(await checkpointRows(db.sql)).toBe(1);
  });

  it("lets two migrators race on a fresh database: both succeed and the schema is applied once", async () => {
    const results = await Promise.all([
      migrate(client(db.url), { slotName: db.slotName }),
      migrate(client(db.url), { slotName: db.slotName }),
      migrate(client(db.url), { slotName: db.slotName }),
    ]);
    const files = readMigrations().length;
    expect(results.map((r) => r.applied.length).sort()).toEqual([0, 0, files]);
    expect(await appliedVersions(db.sql)).toEqual(readMigrations().map((f) => f.version));
    expect((await slotOf(db.sql, db.slotName))?.plugin).toBe("pgoutput");
    expect(await checkpointRows(db.sql)).toBe(1);
  });

  it("lets two migrators race while a long transaction delays the slot's creation", async () => {
    // Creating a logical slot waits for every transaction running on the server
    // (it needs a consistent snapshot): the slot is visible, unfinished, meanwhile.
    // A deploy's second migrator must wait for it, not call it lost.
    const hold = await db.sql.reserve();
    let holding = true;
    try {
      await hold`begin`;
      await hold`select txid_current()`;
      const first = migrate(client(db.url), { slotName: db.slotName });
      first.catch(() => undefined);
      const deadline = Date.now() + 10_000;
      while (!(await slotOf(db.sql, db.slotName))) {
        if (Date.now() > deadline) throw new Error("the first migrator never started creating the slot");
        await new Promise((r) => setTimeout(r, 20));
      }
      expect((await slotOf(db.sql, db.slotName))?.confirmed).toBeNull(); // still being created
      const second = migrate(client(db.url), { slotName: db.slotName });
      second.catch(() => undefined);
      await Promise.race([second, new Promise((r) => setTimeout(r, 500))]).catch(() => undefined);
      await hold`commit`;
      holding = false;
      const outcomes = await Promise.allSettled([first, second]);
      expect(outcomes.map((o) => (o.status === "fulfilled" ? "ok" : `${(o.reason as MigrationError).code}: ${(o.reason as Error).message}`))).toEqual(["ok", "ok"]);
      expect((await slotOf(db.sql, db.slotName))?.confirmed).not.toBeNull();
    } finally {
      if (holding) await hold`rollback`.catch(() => undefined);
      hold.release();
    }
  });

  it("refuses an applied migration that was edited (MIGRATION_CHANGED) and says to restore it", async () => {
    const dir = copyOfMigrations();
    dirs.push(dir);
    await migrate(db.sql, { slotName: db.slotName, migrationsDir: dir });
    const [before] = await db.sql<{ checksum: string }[]>`select checksum from tributary.schema_migrations where version = 1`;
    appendFileSync(join(dir, "0001_core.sql"), "\ncreate table tributary.sneaky (x int);\n");
    const error = await migrationError(migrate(db.sql, { slotName: db.slotName, migrationsDir: dir }), "MIGRATION_CHANGED");
    expect(error.message).toMatch(/migration 0001_core\.sql was changed after it was applied/);
    expect(error.message).toMatch(/restore the file and put the change in a new numbered migration/);
    const [after] = await db.sql<{ checksum: string }[]>`select checksum from tributary.schema_migrations where version = 1`;
    expect(after!.checksum).toBe(before!.checksum);
    const [sneaky] = await db.sql<{ relation: string | null }[]>`select to_regclass('tributary.sneaky')::text as relation`;
    expect(sneaky!.relation).toBeNull();
  });

  it("accepts a migration applied before its comments were corrected (comment errata), and nothing else", async () => {
    await migrate(db.sql, { slotName: db.slotName });
    const corrected = readMigrations().filter((f) => f.appliedChecksum !== null);
    expect(corrected.map((f) => f.version)).toEqual([1, 2, 3, 6]);
    // The database recorded the files as they were applied, comments before the correction.
    for (const f of corrected) await db.sql`update tributary.schema_migrations set checksum = ${f.appliedChecksum} where version = ${f.version}`;
    const again = await migrate(db.sql, { slotName: db.slotName });
    expect(again.applied).toEqual([]);
    // A checksum that is neither the file's nor the applied text's is still an edit.
    await db.sql`update tributary.schema_migrations set checksum = ${"0".repeat(64)} where version = 1`;
    await migrationError(migrate(db.sql, { slotName: db.slotName }), "MIGRATION_CHANGED");
  });

  it("rolls back a failing new migration (MIGRATION_FAILED) and keeps the ones before it", async () => {
    const dir = copyOfMigrations();
    dirs.push(dir);
    await migrate(db.sql, { slotName: db.slotName, migrationsDir: dir });
    const existing = readMigrations(dir).map((f) => f.version);
    const next = Math.max(...existing) + 1;
    const file = (version: number, name: string) => `${String(version).padStart(4, "0")}_${name}.sql`;
    writeFileSync(join(dir, file(next, "widgets")), "create table tributary.widgets (id int primary key);\n");
    writeFileSync(
      join(dir, file(next + 1, "gadgets")),
      "create table tributary.gadgets (id int);\ninsert into tributary.gadgets values (1);\nselect 1 / 0;\n",
    );
    const error = await migrationError(migrate(db.sql, { slotName: db.slotName, migrationsDir: dir }), "MIGRATION_FAILED");
    expect(error.message).toContain(`migration ${file(next + 1, "gadgets")} failed and was rolled back: division by zero`);
    expect(await appliedVersions(db.sql)).toEqual([...existing, next]);
    const [tables] = await db.sql<{ widgets: string | null; gadgets: string | null }[]>`
      select to_regclass('tributary.widgets')::text as widgets, to_regclass('tributary.gadgets')::text as gadgets`;
    expect(tables).toEqual({ widgets: "tributary.widgets", gadgets: null });
    // Fixed, it applies (and the migration lock was released).
    writeFileSync(join(dir, file(next + 1, "gadgets")), "create table tributary.gadgets (id int);\n");
    const fixed = await migrate(client(db.url), { slotName: db.slotName, migrationsDir: dir });
    expect(fixed.applied.map((f) => f.name)).toEqual(["gadgets"]);
    expect(await appliedVersions(db.sql)).toEqual([...existing, next, next + 1]);
  });

  it("a relay newer than the schema stops with NOT_MIGRATED, names the migration it needs, and runs once migrated", async () => {
    const dir = copyOfMigrations();
    dirs.push(dir);
    const newest = readMigrations(dir).filter((f) => f.version >= 13);
    for (const f of newest) unlinkSync(join(dir, `${String(f.version).padStart(4, "0")}_${f.name}.sql`));
    await migrate(db.sql, { slotName: db.slotName, migrationsDir: dir });
    await db.sql`select tributary.create_stream('orders', 2)`;
    // Without 0013 the schema still has 0012's grants; one schema further back, the relay's COPY would be refused as a privilege.
    const fatal = await relayFatal(db.url, db.slotName);
    expect(fatal.code).toBe("NOT_MIGRATED");
    expect(fatal.message).toMatch(/older than this relay: it needs migration 0013_time_marks and the ones before it\. Run migrate\(\) \(@tributary\/migrate\) first/);

    await migrate(db.sql, { slotName: db.slotName });
    await db.sql.begin((tx) => appendBatch(tx, [{ stream: "orders", key: "k", type: "T", data: 1 }]));
    const relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
    try {
      await waitForCount(db.sql, 1);
    } finally {
      await relay.stop();
    }
  });

  it("refuses to re-create a dropped slot (SLOT_LOST); the relay stops with SLOT_LOST too", async () => {
    await migrate(db.sql, { slotName: db.slotName });
    await db.sql`select pg_drop_replication_slot(${db.slotName})`;
    const error = await migrationError(migrate(db.sql, { slotName: db.slotName }), "SLOT_LOST");
    expect(error.message).toMatch(new RegExp(`replication slot '${db.slotName}' was dropped`));
    expect(error.message).toMatch(/will not re-create it silently/);
    expect(error.message).toMatch(/DELETE FROM tributary\.relay_checkpoints WHERE slot_name = '.*'; then run migrate\(\) \(@tributary\/migrate\)/);
    expect(error.message, "a library's message names no CLI flag or command").not.toMatch(/--\w|tributary migrate/);
    expect(await slotOf(db.sql, db.slotName)).toBeUndefined();

    const fatal = await relayFatal(db.url, db.slotName);
    expect(fatal.code).toBe("SLOT_LOST");
    expect(fatal.message).toMatch(/was dropped/);
    expect(await slotOf(db.sql, db.slotName)).toBeUndefined();

    // The way out the message gives works.
    await db.sql.unsafe(error.message.match(/DELETE FROM tributary\.relay_checkpoints WHERE slot_name = '[^']*'/)![0]);
    await migrate(db.sql, { slotName: db.slotName });
    expect((await slotOf(db.sql, db.slotName))?.plugin).toBe("pgoutput");
  });

  it("refuses a slot of another decoder (SLOT_PLUGIN_MISMATCH), in migrate and in the relay", async () => {
    await migrate(db.sql, { slotName: db.slotName, decoder: "pgoutput" });
    const error = await migrationError(migrate(db.sql, { slotName: db.slotName, decoder: "wal2json" }), "SLOT_PLUGIN_MISMATCH");
    expect(error.message).toMatch(/uses the pgoutput decoder, not wal2json\. Use decoder: "pgoutput" \(a slot's decoder is fixed when it is created, and one slot feeds a database's streams\)/);
    expect(error.message).not.toMatch(/another slot|slotName|--/);
    expect((await slotOf(db.sql, db.slotName))?.plugin).toBe("pgoutput");
    const fatal = await relayFatal(db.url, db.slotName, { decoder: "wal2json" });
    expect(fatal.code).toBe("SLOT_PLUGIN_MISMATCH");
    expect(fatal.message).toMatch(/start the relay with decoder: "pgoutput"/);
  });

  it("refuses a slot name already taken by another database on the same server", async () => {
    // Slot names are server-wide; a slot of another database cannot capture this one's events.
    const other = await createTestDatabase(firstBackend, { migrate: false });
    try {
      await migrate(other.sql, { slotName: db.slotName });
      const error = await migrate(db.sql, { slotName: db.slotName }).then(
        (result) => new Error(`migrate succeeded and reported slot '${result.slot.slotName}' ready, but that slot belongs to database ${other.slotName}`),
        (e: unknown) => e as Error,
      );
      expect(error).toBeInstanceOf(MigrationError);
      expect(error.message).toMatch(new RegExp(other.slotName));
      expect(error.message).toMatch(/its own slot with slotName: "<name>"/);
    } finally {
      await other.sql`select pg_drop_replication_slot(${db.slotName})`.catch(() => undefined);
      await other.drop();
    }
  });
});

describe.skipIf(!pgoutputOnly)("migrate --decoder wal2json on a server without wal2json", () => {
  const backend: Backend = { name: "no-wal2json", decoder: "pgoutput", serverUrl: pgoutputOnly?.url ?? "", version: pgoutputOnly?.version ?? 0 };
  let db: TestDatabase;
  beforeEach(async () => {
    db = await createTestDatabase(backend, { migrate: false });
  });
  afterEach(async () => {
    await db.drop();
  });

  it("fails with PLUGIN_MISSING and an install hint, leaves no slot, and pgoutput still works after", async () => {
    const error = await migrationError(migrate(db.sql, { slotName: db.slotName, decoder: "wal2json" }), "PLUGIN_MISSING");
    expect(error.message).toMatch(/the wal2json output plugin is not installed on the PostgreSQL server/);
    expect(error.message).toMatch(/apt-get install postgresql-.*-wal2json/);
    expect(error.message).toMatch(/or use decoder: "pgoutput"/);
    expect(await slotOf(db.sql, db.slotName)).toBeUndefined();
    expect(await checkpointRows(db.sql)).toBe(0);
    const retry = await migrate(db.sql, { slotName: db.slotName, decoder: "pgoutput" });
    expect(retry.slot.plugin).toBe("pgoutput");
  });
});

const embedded = findInstallation("embedded18");

describe.skipIf("missing" in embedded)("on a server with wal_level = replica", () => {
  let cluster: Cluster;
  let sql: Sql;
  beforeAll(async () => {
    cluster = await Cluster.start(embedded as Exclude<typeof embedded, { missing: string }>, { settings: { wal_level: "replica" } });
    sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
  });
  afterAll(async () => {
    await sql?.end({ timeout: 1 });
    await cluster?.destroy();
  });

  it("migrate fails with WAL_LEVEL_NOT_LOGICAL, says how to fix it, and changes nothing", async () => {
    const error = await migrationError(migrate(sql), "WAL_LEVEL_NOT_LOGICAL");
    expect(error.message).toMatch(/wal_level is 'replica'/);
    expect(error.message).toMatch(/ALTER SYSTEM SET wal_level = logical/);
    expect(error.message).toMatch(/restart PostgreSQL/);
    const [row] = await sql<{ schema: string | null }[]>`select to_regnamespace('tributary')::text as schema`;
    expect(row!.schema).toBeNull();
  });

  it("the relay stops with WAL_LEVEL_NOT_LOGICAL", async () => {
    const fatal = await relayFatal(cluster.url, "tributary");
    expect(fatal.code).toBe("WAL_LEVEL_NOT_LOGICAL");
    expect(fatal.message).toMatch(/wal_level = logical/);
  });
});
