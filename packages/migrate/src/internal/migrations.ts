/**
 * Reads the numbered SQL files of `migrations/` (the single source of the
 * schema) and applies the missing ones, each in its own transaction, recorded
 * with a SHA-256 checksum. Two processes migrating at once serialize on an
 * advisory lock; an applied file whose content changed is an error, never
 * re-applied.
 *
 * The lock and the transactions run on a session of their own (openSession,
 * docs/ARCHITECTURE.md, Known traps): if its connection dies, nothing more is
 * sent on it, and ending it releases the lock and rolls back a failed
 * migration's transaction.
 */
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Sql } from "postgres";
import { MIGRATE_LOCK } from "@tributary/core";
import { withSession } from "@tributary/client";
import { appliedChecksum, sha256 } from "./comment-errata.ts";
import { MigrationError } from "./errors.ts";

export interface MigrationFile {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
  /** The checksum of the file as it was applied, when comment-errata.ts corrected its comments since. */
  readonly appliedChecksum: string | null;
}

/**
 * The repository's migrations/ when this module runs from its TypeScript
 * source (tests, the clone), the package's own copy (made by its build and
 * published with it) when it runs from dist/ (an installed package).
 */
export const defaultMigrationsDir = fileURLToPath(
  import.meta.url.endsWith(".ts") ? new URL("../../../../migrations/", import.meta.url) : new URL("../../migrations/", import.meta.url),
);

const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;

export function readMigrations(dir: string = defaultMigrationsDir): MigrationFile[] {
  return readdirSync(dir)
    .filter((f) => FILE_PATTERN.test(f))
    .sort()
    .map((file) => {
      const [, version, name] = FILE_PATTERN.exec(file)!;
      const sql = readFileSync(`${dir}/${file}`, "utf8");
      return { version: Number(version), name: name!, sql, checksum: sha256(sql), appliedChecksum: appliedChecksum(Number(version), sql) };
    });
}

export interface MigrateResult {
  readonly applied: readonly MigrationFile[];
  readonly alreadyApplied: number;
}

export async function applyMigrations(sql: Sql, files: readonly MigrationFile[]): Promise<MigrateResult> {
  return withSession(sql, async (conn) => {
    await conn`select pg_advisory_lock(${MIGRATE_LOCK})`;
    await conn`create schema if not exists tributary`;
    await conn`
      create table if not exists tributary.schema_migrations (
        version int primary key,
        name text not null,
        checksum text not null,
        applied_at timestamptz not null default now()
      )`;
    const rows = await conn<{ version: number; name: string; checksum: string }[]>`
      select version, name, checksum from tributary.schema_migrations order by version`;
    const known = new Map(rows.map((r) => [r.version, r]));
    for (const file of files) {
      const done = known.get(file.version);
      if (done && done.checksum !== file.checksum && done.checksum !== file.appliedChecksum) {
        throw new MigrationError(
          "MIGRATION_CHANGED",
          `migration ${String(file.version).padStart(4, "0")}_${file.name}.sql was changed after it was applied ` +
            `(recorded checksum ${done.checksum.slice(0, 12)}…, file now ${file.checksum.slice(0, 12)}…). ` +
            `Applied migrations are never edited: restore the file and put the change in a new numbered migration.`,
        );
      }
    }
    const pending = files.filter((f) => !known.has(f.version));
    for (const file of pending) {
      // Explicit BEGIN/COMMIT: the advisory lock lives on this session. A
      // failed migration's transaction is rolled back when the session ends.
      await conn`begin`;
      try {
        await conn.unsafe(file.sql);
        await conn`insert into tributary.schema_migrations (version, name, checksum)
                   values (${file.version}, ${file.name}, ${file.checksum})`;
        await conn`commit`;
      } catch (error) {
        throw new MigrationError(
          "MIGRATION_FAILED",
          `migration ${String(file.version).padStart(4, "0")}_${file.name}.sql failed and was rolled back: ${(error as Error).message}`,
        );
      }
    }
    return { applied: pending, alreadyApplied: files.length - pending.length };
  });
}
