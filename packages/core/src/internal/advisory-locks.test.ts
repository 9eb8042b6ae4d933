import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as locks from "./advisory-locks.ts";
import * as channels from "./notify-channels.ts";

// The schema (migrations/, docs/ARCHITECTURE.md) notifies and locks in SQL too:
// every channel and key it uses must be one listed here, so no copy drifts.
const migrationsDir = new URL("../../../../migrations/", import.meta.url);
const migrationsSql = readdirSync(migrationsDir)
  .filter((f) => f.endsWith(".sql"))
  .map((f) => readFileSync(new URL(f, migrationsDir), "utf8"))
  .join("\n");

describe("advisory lock keys and NOTIFY channels", () => {
  it("gives every lock its own key", () => {
    const keys = Object.values(locks);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it("lists every advisory lock key the migrations take", () => {
    const inSql = [...migrationsSql.matchAll(/pg_(?:try_)?advisory_(?:xact_)?lock(?:_shared)?\((\d+)/g)].map((m) => Number(m[1]));
    expect(inSql.length).toBeGreaterThan(0);
    for (const key of inSql) expect(Object.values(locks)).toContain(key);
  });

  it("lists every channel the migrations notify", () => {
    const inSql = [...migrationsSql.matchAll(/pg_notify\('([a-z_]+)'/g)].map((m) => m[1]);
    expect(inSql.length).toBeGreaterThan(0);
    for (const channel of inSql) expect(Object.values(channels)).toContain(channel);
  });
});
