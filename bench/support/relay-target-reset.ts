/**
 * bench:relay's metrics comparison drains the same backlog several times,
 * each run on its own slot (created before the backlog was written), into
 * the same empty target: this puts the streams back as they were before the
 * first event, and hands the checkpoint to `slot` at the slot's own start
 * (the relay refuses a second slot's checkpoint, invariant 4, and a slot
 * ahead of its checkpoint, SLOT_GAP). A benchmark's shortcut only: events
 * are append-only (the truncate trigger), so the triggers are off for it.
 * The relays must be stopped.
 */
import type { Sql } from "postgres";

export async function resetRelayTarget(sql: Sql, slot: string): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`set local session_replication_role = replica`;
    await tx`truncate tributary.events`;
    await tx`delete from tributary.partition_offsets`;
    await tx`delete from tributary.time_marks`;
    await tx`delete from tributary.relay_checkpoints`;
    const [inserted] = await tx`
      insert into tributary.relay_checkpoints (slot_name, plugin, commit_lsn, end_lsn)
      select slot_name, plugin, confirmed_flush_lsn, confirmed_flush_lsn from pg_replication_slots where slot_name = ${slot}
      returning slot_name`;
    if (!inserted) throw new Error(`no replication slot '${slot}' to hand the checkpoint to`);
  });
}
