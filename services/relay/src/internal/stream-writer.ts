/**
 * Writes one batch into the stream table, its partitions' next offsets and the
 * relay checkpoint, in one PostgreSQL transaction (DESIGN.md invariants 1, 2, 4).
 * The checkpoint is compare-and-set on its version: a relay whose version is
 * stale (another relay wrote since) is fenced and writes nothing.
 */
import type { Sql } from "postgres";
import { Lsn } from "@tributary/wal";
import type { Batch } from "./relay-state.ts";
import { RelayFencedError } from "./errors.ts";

export async function writeBatch(sql: Sql, slotName: string, relayId: string, batch: Batch, expectedVersion: bigint): Promise<bigint> {
  const { rows, position } = batch;
  return sql.begin(async (tx) => {
    // The compare-and-set comes first: a fenced relay stops here, before it
    // could collide with (or wait on) the rows of the relay that replaced it.
    const updated = await tx<{ version: string }[]>`
      update tributary.relay_checkpoints
         set commit_lsn = ${Lsn.format(position.commitLsn)}::pg_lsn,
             end_lsn = ${Lsn.format(position.endLsn)}::pg_lsn,
             partial_commit_lsn = ${position.partialCommitLsn === null ? null : Lsn.format(position.partialCommitLsn)}::pg_lsn,
             partial_events = ${position.partialEvents},
             version = version + 1,
             relay_id = ${relayId},
             updated_at = now()
       where slot_name = ${slotName} and version = ${expectedVersion.toString()}::bigint
       returning version::text`;
    if (updated.length !== 1) {
      throw new RelayFencedError(
        `relay ${relayId} was fenced: the checkpoint of slot '${slotName}' moved past version ${expectedVersion} ` +
          `(another relay took over). This relay's batch was rolled back.`,
      );
    }
    if (batch.size > 0) {
      const copy = await tx`
        copy tributary.events (stream, partition, "offset", id, key, type, data, headers, committed_at)
        from stdin`.writable();
      await new Promise<void>((resolve, reject) => {
        copy.once("error", reject);
        copy.once("finish", resolve);
        copy.end(rows);
      });
      await tx`
        insert into tributary.partition_offsets (stream, partition, next_offset)
        select * from unnest(${batch.offsets.map((o) => o.stream)}::text[],
                             ${batch.offsets.map((o) => o.partition)}::int[],
                             ${batch.offsets.map((o) => o.nextOffset)}::bigint[])
        on conflict (stream, partition) do update set next_offset = excluded.next_offset`;
      await tx`select pg_notify('tributary_events', ${slotName})`;
    }
    return BigInt(updated[0]!.version);
  }) as Promise<bigint>;
}
