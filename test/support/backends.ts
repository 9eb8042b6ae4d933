/**
 * The decoder × server matrix every contract test runs against:
 * pgoutput on PostgreSQL 18 (embedded) and 15 (system), wal2json on 15.
 * Each test gets a fresh database with its own slot, migrated.
 */
import { randomBytes } from "node:crypto";
import postgres, { type Sql } from "postgres";
import { describe, inject } from "vitest";
import type { Decoder } from "@tributary/core";
import { migrate } from "@tributary/migrate";

export interface Backend {
  readonly name: string;
  readonly decoder: Decoder;
  readonly serverUrl: string;
  readonly version: number;
}

export function backends(): Backend[] {
  const list: Backend[] = [];
  for (const server of inject("servers")) {
    list.push({ name: `pg${server.version}-pgoutput`, decoder: "pgoutput", serverUrl: server.url, version: server.version });
    if (server.hasWal2json) list.push({ name: `pg${server.version}-wal2json`, decoder: "wal2json", serverUrl: server.url, version: server.version });
  }
  return list;
}

/** describe() once per backend of the matrix. */
export function describeBackends(title: string, body: (backend: Backend) => void): void {
  for (const backend of backends()) describe(`${title} [${backend.name}]`, () => body(backend));
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
