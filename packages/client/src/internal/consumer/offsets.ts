/**
 * Committed offsets of a group (docs/ARCHITECTURE.md invariants 8 and 9).
 *
 * A commit names the partition, the generation its member owns it under and
 * the next offset to handle. It goes in only if that member still owns the
 * partition under that generation (or is still releasing it under that
 * generation); the assignment row is share-locked until the commit's
 * transaction ends, so a rebalance moving the partition waits for it, and a
 * commit after the move finds the new generation and is rejected. Inside a
 * transactional handler the check, the handler's writes and the offset
 * commit together or not at all.
 */
import type { Sql, TransactionSql } from "postgres";
import { transaction } from "../connection/transaction.ts";
import { TributaryGroupError } from "../errors.ts";

export interface OffsetCommit {
  readonly stream: string;
  readonly partition: number;
  readonly generation: number;
  /** The next offset to handle (last handled + 1). */
  readonly nextOffset: number;
}

function staleGeneration(group: string, memberId: string, partitions: readonly OffsetCommit[]): TributaryGroupError {
  return new TributaryGroupError(
    "STALE_GENERATION",
    `member ${memberId} of group ${group} no longer owns ${partitions.map((p) => `${p.stream}/${p.partition} (generation ${p.generation})`).join(", ")}: ` +
      "the partition moved to another member (this member was paused or silent past its session timeout); its commit was rejected and the new owner resumes from the last committed offset.",
  );
}

/** Commits offsets, all or none: throws a TributaryGroupError STALE_GENERATION if any partition is no longer this member's. */
export async function commitOffsets(sql: Sql | TransactionSql, group: string, memberId: string, commits: readonly OffsetCommit[]): Promise<void> {
  if (commits.length === 0) return;
  const run = async (tx: Sql | TransactionSql) => {
    const written = await tx<{ stream: string; partition: number }[]>`
      with requested as (
        select * from unnest(${commits.map((c) => c.stream)}::text[], ${commits.map((c) => c.partition)}::int[],
                             ${commits.map((c) => c.generation)}::bigint[], ${commits.map((c) => c.nextOffset)}::bigint[])
                   as r(stream, partition, generation, next_offset)
      ), owned as (
        select r.* from requested r
          join tributary.group_assignments a
            on a.group_name = ${group} and a.stream = r.stream and a.partition = r.partition
           and ((a.member_id = ${memberId} and a.generation = r.generation)
             or (a.releasing_member = ${memberId} and a.releasing_generation = r.generation))
           for share of a
      )
      insert into tributary.group_offsets (group_name, stream, partition, next_offset, committed_at)
      select ${group}, stream, partition, next_offset, now() from owned
      on conflict (group_name, stream, partition) do update
         set next_offset = excluded.next_offset, committed_at = excluded.committed_at
      returning stream, partition`;
    if (written.length !== commits.length) {
      const ok = new Set(written.map((w) => `${w.stream}\u0000${w.partition}`));
      const stale = commits.filter((c) => !ok.has(`${c.stream}\u0000${c.partition}`));
      throw staleGeneration(group, memberId, stale);
    }
  };
  // Outside a transaction, a partial commit must not stay: run it in one.
  if ("begin" in sql && commits.length > 1) await transaction(sql, (tx) => run(tx));
  else await run(sql);
}

/** The committed next offset of each partition that has one. */
export async function committedOffsets(sql: Sql | TransactionSql, group: string, partitions: ReadonlyArray<{ stream: string; partition: number }>): Promise<Map<string, number>> {
  if (partitions.length === 0) return new Map();
  const rows = await sql<{ stream: string; partition: number; next_offset: string }[]>`
    select o.stream, o.partition, o.next_offset::text
      from tributary.group_offsets o
      join unnest(${partitions.map((p) => p.stream)}::text[], ${partitions.map((p) => p.partition)}::int[]) as r(stream, partition)
        on o.stream = r.stream and o.partition = r.partition
     where o.group_name = ${group}`;
  return new Map(rows.map((r) => [`${r.stream}\u0000${r.partition}`, Number(r.next_offset)]));
}
