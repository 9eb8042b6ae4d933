/**
 * The replication slot the relay reads. migrate() creates it, so
 * events appended after migrate are retained in the WAL even before any relay
 * has run (docs/ARCHITECTURE.md invariant 7). A slot that existed once (a checkpoint row
 * says so) and is now gone or invalidated is a gap in the stream: we stop with
 * an error and never re-create it silently.
 */
import type { Sql } from "postgres";
import type { Decoder } from "@tributary/core";
import { MigrationError } from "./errors.ts";

export const defaultSlotName = "tributary";

export interface SlotState {
  readonly slotName: string;
  readonly plugin: Decoder;
  readonly confirmedFlushLsn: string;
  readonly walStatus: string | null;
  readonly active: boolean;
}

export async function checkWalLevel(sql: Sql): Promise<void> {
  const [row] = await sql<{ wal_level: string }[]>`select current_setting('wal_level') as wal_level`;
  if (row?.wal_level !== "logical") {
    throw new MigrationError(
      "WAL_LEVEL_NOT_LOGICAL",
      `wal_level is '${row?.wal_level}', but Tributary reads the WAL through logical decoding. ` +
        `Run ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL, and try again.`,
    );
  }
}

/**
 * Reads the slot; throws SLOT_LOST when a slot the relay used is gone or
 * invalidated, and SLOT_IN_OTHER_DATABASE when the name belongs to another
 * database's slot. A slot still being created (its confirmed position not yet
 * set while it waits for running transactions) is waited for.
 */
export async function inspectSlot(sql: Sql, slotName: string, options: { creationTimeoutMs?: number } = {}): Promise<SlotState | null> {
  const deadline = Date.now() + (options.creationTimeoutMs ?? 60_000);
  for (;;) {
    const [slot] = await sql<{ plugin: string; confirmed_flush_lsn: string | null; wal_status: string | null; active: boolean; database: string | null; current: string }[]>`
      select plugin, confirmed_flush_lsn::text, wal_status, active, database, current_database() as current
        from pg_replication_slots where slot_name = ${slotName}`;
    const [checkpoint] = await sql<{ plugin: string }[]>`
      select plugin from tributary.relay_checkpoints where slot_name = ${slotName}`;
    if (!slot) {
      if (checkpoint) {
        throw new MigrationError(
          "SLOT_LOST",
          `replication slot '${slotName}' was dropped, but the relay had been reading from it: ` +
            `events committed since then may be missing from the stream. Tributary will not re-create it silently. ` +
            `Investigate (who dropped it?), then to accept the gap and go on: ` +
            `DELETE FROM tributary.relay_checkpoints WHERE slot_name = '${slotName}'; then run migrate() (@tributary/migrate).`,
        );
      }
      return null;
    }
    if (slot.database !== slot.current) {
      throw new MigrationError(
        "SLOT_IN_OTHER_DATABASE",
        `replication slot '${slotName}' belongs to database '${slot.database}', not '${slot.current}': ` +
          `slot names are server-wide. Give this database its own slot with slotName: "<name>".`,
      );
    }
    if (slot.wal_status === "lost") {
      throw new MigrationError(
        "SLOT_LOST",
        `replication slot '${slotName}' was invalidated (wal_status 'lost'): PostgreSQL removed WAL the relay had not read ` +
          `(max_slot_wal_keep_size?). Events from that WAL are missing from the stream. To accept the gap: ` +
          `SELECT pg_drop_replication_slot('${slotName}'); DELETE FROM tributary.relay_checkpoints WHERE slot_name = '${slotName}'; then run migrate() (@tributary/migrate).`,
      );
    }
    if (slot.confirmed_flush_lsn !== null) {
      return {
        slotName,
        plugin: slot.plugin as Decoder,
        confirmedFlushLsn: slot.confirmed_flush_lsn,
        walStatus: slot.wal_status,
        active: slot.active,
      };
    }
    // Being created by another migrate: creation waits for running transactions.
    if (Date.now() > deadline) {
      throw new MigrationError(
        "SLOT_NOT_READY",
        `replication slot '${slotName}' is still being created: its creation waits for the transactions running on the server ` +
          `to finish. Find long-running transactions in pg_stat_activity, then try again.`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * One slot feeds a database's streams: a relay on a second slot would number
 * every event again (duplicates). A standby shares the active relay's slot.
 */
async function refuseSecondSlot(sql: Sql, slotName: string): Promise<void> {
  const [other] = await sql<{ slot_name: string; plugin: string }[]>`
    select slot_name, plugin from tributary.relay_checkpoints where slot_name <> ${slotName}`;
  if (!other) return;
  throw new MigrationError(
    "SECOND_SLOT",
    `this database's streams are already fed by replication slot '${other.slot_name}' (${other.plugin}); ` +
      `a relay on a second slot '${slotName}' would write every event a second time. ` +
      `For a standby relay, start another relay with slotName: "${other.slot_name}" (it takes over when the active one stops). ` +
      `To move to a new slot instead, stop the relays, drop the old one (SELECT pg_drop_replication_slot('${other.slot_name}'); ` +
      `DELETE FROM tributary.relay_checkpoints WHERE slot_name = '${other.slot_name}';) and migrate again: events committed in between are lost.`,
  );
}

/** Creates the slot (and its checkpoint row) when missing. Idempotent and safe to race. */
export async function ensureSlot(sql: Sql, slotName: string, decoder: Decoder): Promise<SlotState> {
  await refuseSecondSlot(sql, slotName);
  let slot = await inspectSlot(sql, slotName);
  if (!slot) {
    try {
      await sql`select pg_create_logical_replication_slot(${slotName}, ${decoder})`;
    } catch (error) {
      const [v] = await sql<{ major: string }[]>`select (current_setting('server_version_num')::int / 10000)::text as major`;
      throw explainSlotCreationError(error, slotName, decoder, v?.major ?? "<version>");
    }
    slot = (await inspectSlot(sql, slotName))!;
  }
  if (slot.plugin !== decoder) {
    throw new MigrationError(
      "SLOT_PLUGIN_MISMATCH",
      `replication slot '${slotName}' uses the ${slot.plugin} decoder, not ${decoder}. ` +
        `Use decoder: "${slot.plugin}" (a slot's decoder is fixed when it is created, and one slot feeds a database's streams).`,
    );
  }
  try {
    await sql`
      insert into tributary.relay_checkpoints (slot_name, plugin, end_lsn)
      values (${slotName}, ${decoder}, ${slot.confirmedFlushLsn}::pg_lsn)
      on conflict (slot_name) do nothing`;
  } catch (error) {
    // A racing migrate inserted the same slot's row first: the one-slot index, not the key, saw it.
    const e = error as { code?: string; constraint_name?: string };
    const raced = e.code === "23505" && e.constraint_name === "relay_checkpoints_one_slot" &&
      (await sql`select 1 from tributary.relay_checkpoints where slot_name = ${slotName}`).length === 1;
    if (!raced) throw error;
  }
  return slot;
}

function explainSlotCreationError(error: unknown, slotName: string, decoder: Decoder, serverMajor: string): unknown {
  const e = error as { code?: string; message?: string };
  if (e.code === "42710") return error; // raced with another migrate: caller re-inspects
  if (e.code === "58P01" || /could not access file/.test(e.message ?? "")) {
    return new MigrationError(
      "PLUGIN_MISSING",
      `the ${decoder} output plugin is not installed on the PostgreSQL server (${e.message}). ` +
        `Install it on the server (Debian/Ubuntu: apt-get install postgresql-${serverMajor}-${decoder}) or use decoder: "pgoutput".`,
    );
  }
  if (/may not be used as an output plugin/.test(e.message ?? "")) {
    return new MigrationError(
      "PLUGIN_NOT_ALLOWED",
      `the server does not allow ${decoder} as an output plugin (${e.message}). ` +
        `Add it to output_plugin_libraries (ALTER SYSTEM SET output_plugin_libraries = 'pgoutput, ${decoder}'; SELECT pg_reload_conf();) or use decoder: "pgoutput".`,
    );
  }
  if (/wal_level/.test(e.message ?? "")) {
    return new MigrationError("WAL_LEVEL_NOT_LOGICAL", `cannot create slot '${slotName}': ${e.message}`);
  }
  return error;
}
