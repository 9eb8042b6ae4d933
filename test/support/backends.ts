/**
 * The decoder × server matrix every contract test runs against:
 * pgoutput on PostgreSQL 18 (embedded) and 15 (system), wal2json on 15.
 * Each test gets a fresh database with its own slot, migrated.
 * A wal2json leg whose server has no wal2json is skipped, and says so and
 * how to get it (with clusters of the run's own, TRIBUTARY_REQUIRE_WAL2JSON=1
 * makes it a failure instead).
 */
import { randomBytes } from "node:crypto";
import postgres, { type Sql } from "postgres";
import { describe, inject, it } from "vitest";
import type { Decoder } from "@tributary/core";
import { migrate } from "@tributary/migrate";

export interface Backend {
  readonly name: string;
  readonly decoder: Decoder;
  readonly serverUrl: string;
  readonly version: number;
}

/** A leg of the matrix this machine cannot run, and why. */
interface MissingBackend {
  readonly name: string;
  readonly reason: string;
}

function matrix(): { backends: Backend[]; missing: MissingBackend[] } {
  const list: Backend[] = [];
  const missing: MissingBackend[] = [];
  for (const server of inject("servers")) {
    list.push({ name: `pg${server.version}-pgoutput`, decoder: "pgoutput", serverUrl: server.url, version: server.version });
    const wal2json = `pg${server.version}-wal2json`;
    if (server.hasWal2json) list.push({ name: wal2json, decoder: "wal2json", serverUrl: server.url, version: server.version });
    // The embedded PostgreSQL 18 ships no wal2json: that leg is not part of the matrix, not a skip.
    else if (server.kind === "system15") {
      missing.push({
        name: wal2json,
        reason: `wal2json is not installed for PostgreSQL ${server.version}: apt-get install -y postgresql-${server.version}-wal2json (TRIBUTARY_REQUIRE_WAL2JSON=1 makes this a failure)`,
      });
    } else if (server.kind === "external") {
      missing.push({ name: wal2json, reason: "the server at TRIBUTARY_TEST_DATABASE_URL lists no wal2json in pg_available_extensions" });
    }
  }
  return { backends: list, missing };
}

export function backends(): Backend[] {
  return matrix().backends;
}

/**
 * describe() once per backend of the matrix; a leg this machine cannot run
 * is one skipped test that prints why (to stderr, shown in the run's output).
 */
export function describeBackends(title: string, body: (backend: Backend) => void): void {
  const { backends, missing } = matrix();
  for (const backend of backends) describe(`${title} [${backend.name}]`, () => body(backend));
  for (const leg of missing) {
    describe(`${title} [${leg.name}]`, () => it("needs wal2json", (ctx) => {
      console.warn(`skipped ${title} [${leg.name}]: ${leg.reason}`);
      ctx.skip(leg.reason);
    }));
  }
}

export interface TestDatabase {
  readonly url: string;
  readonly slotName: string;
  readonly decoder: Decoder;
  readonly sql: Sql;
  /** Drops the slot and the database. */
  drop(): Promise<void>;
}

function withDatabase(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/** A new database on the backend's server, migrated with a slot of the backend's decoder. */
export async function createTestDatabase(backend: Backend, options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const name = `t_${randomBytes(6).toString("hex")}`;
  const admin = postgres(backend.serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  const url = withDatabase(backend.serverUrl, name);
  const sql = postgres(url, { max: 10, onnotice: () => {} });
  if (options.migrate !== false) await migrate(sql, { slotName: name, decoder: backend.decoder });
  return {
    url,
    slotName: name,
    decoder: backend.decoder,
    sql,
    drop: async () => {
      await sql.end({ timeout: 1 });
      const admin = postgres(backend.serverUrl, { max: 1, onnotice: () => {} });
      try {
        await admin`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = ${name} and not active`;
        await admin.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await admin.end();
      }
    },
  };
}
