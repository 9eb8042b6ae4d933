import type { Sql } from "postgres";
import type { Decoder } from "@tributary/core";
import { applyMigrations, readMigrations, type MigrateResult } from "./internal/migrations.ts";
import { checkWalLevel, defaultSlotName, ensureSlot, type SlotState } from "./internal/slot.ts";

export { MigrationError, type MigrationErrorCode } from "./internal/errors.ts";
export { applyMigrations, defaultMigrationsDir, readMigrations } from "./internal/migrations.ts";
export type { MigrateResult, MigrationFile } from "./internal/migrations.ts";
export { checkWalLevel, defaultSlotName, ensureSlot, inspectSlot } from "./internal/slot.ts";
export type { SlotState } from "./internal/slot.ts";

export interface MigrateOptions {
  readonly slotName?: string;
  readonly decoder?: Decoder;
  readonly migrationsDir?: string;
}

/** Schema, publication, then the replication slot (what `tributary migrate` runs). */
export async function migrate(sql: Sql, options: MigrateOptions = {}): Promise<MigrateResult & { slot: SlotState }> {
  await checkWalLevel(sql);
  const result = await applyMigrations(sql, readMigrations(options.migrationsDir));
  const slot = await ensureSlotRetryingRace(sql, options.slotName ?? defaultSlotName, options.decoder ?? "pgoutput");
  return { ...result, slot };
}

async function ensureSlotRetryingRace(sql: Sql, slotName: string, decoder: Decoder): Promise<SlotState> {
  try {
    return await ensureSlot(sql, slotName, decoder);
  } catch (error) {
    if ((error as { code?: string }).code === "42710") return ensureSlot(sql, slotName, decoder);
    throw error;
  }
}
