/**
 * The group membership protocol, in the database (docs/ARCHITECTURE.md invariant 8).
 *
 * Every change to a group — a heartbeat, a join, a leave, an expiry — is one
 * transaction under the group's advisory lock, so rebalances never interleave.
 * A heartbeat:
 *
 *   1. records the member (joining if new) and drops members silent for
 *      longer than their session timeout;
 *   2. recomputes the assignment (assignor.ts: sticky, even ±1); every
 *      partition that changes owner gets the group's next generation;
 *   3. returns this member's partitions, and when to check again (the next
 *      moment another member could expire), so a dead member's partitions
 *      move within the session timeout plus a heartbeat round trip.
 *
 * Hand-off between two live members is cooperative: the new owner's
 * partition is "not ready" until the previous owner has committed its last
 * batch and released it (or the release deadline passed); the previous owner
 * may still commit under its old generation meanwhile. Commits check
 * ownership and generation under a share lock on the assignment row
 * (offsets.ts), so a commit and a rebalance of the same partition serialize:
 * a stale member can never move an offset (fencing).
 *
 * Changes are announced with NOTIFY tributary_groups (payload: group name), so
 * members re-heartbeat at once instead of waiting for their interval.
 */
import type { Sql, TransactionSql } from "postgres";
import { GROUP_LOCK, GROUPS_CHANNEL } from "@tributary/core";
import { transaction } from "../connection/transaction.ts";
import { assignPartitions, partitionKey } from "./assignor.ts";

export interface MemberIdentity {
  readonly group: string;
  readonly memberId: string;
}

export interface HeartbeatRequest extends MemberIdentity {
  readonly streams: readonly string[];
  readonly sessionTimeoutMs: number;
  /** How long a previous owner may take to release a partition it lost. */
  readonly releaseTimeoutMs: number;
  readonly client?: string;
}

export interface OwnedPartition {
  readonly stream: string;
  readonly partition: number;
  readonly generation: number;
  /** False while the previous owner has not released it yet. */
  readonly ready: boolean;
}

export interface HeartbeatResult {
  readonly owned: OwnedPartition[];
  /** Partitions this member lost but may still commit under its old generation until it releases them. */
  readonly releasing: Array<{ stream: string; partition: number; generation: number }>;
  /** When another member could expire or a release deadline passes: heartbeat again then. */
  readonly nextCheckMs: number | null;
  readonly rebalanced: boolean;
}

type Tx = TransactionSql;

export async function heartbeat(sql: Sql, request: HeartbeatRequest): Promise<HeartbeatResult> {
  return await transaction(sql, async (tx) => {
    await lockGroup(tx, request.group);
    // Row-level security would hide what the role may not use (migrations/0007_privileges.sql):
    // say so instead (42501, naming the grant an admin runs).
    await tx`
      select tributary.authorize_group(${request.group})
      union all
      select tributary.authorize_read(s) from unnest(${[...request.streams]}::text[]) as s`;
    // Unknown streams are created with the default partition count, as append does.
    await tx`
      select tributary.create_stream(s)
        from unnest(${[...request.streams]}::text[]) as s
       where not exists (select 1 from tributary.streams where name = s)`;
    await tx`insert into tributary.consumer_groups (group_name) values (${request.group}) on conflict do nothing`;
    await tx`
      insert into tributary.group_members (group_name, member_id, streams, session_timeout, client)
      values (${request.group}, ${request.memberId}, ${[...request.streams]}::text[],
              ${request.sessionTimeoutMs} * interval '1 millisecond', ${request.client ?? null})
      on conflict (group_name, member_id) do update
         set streams = excluded.streams, session_timeout = excluded.session_timeout,
             client = excluded.client, heartbeat_at = now()`;
    const rebalanced = await rebalance(tx, request.group, request.releaseTimeoutMs);
    return { ...(await memberView(tx, request)), rebalanced };
  });
}

/** Leaves the group at once: the member's partitions go to the others now, not after the session timeout. */
export async function leave(sql: Sql, member: MemberIdentity, releaseTimeoutMs: number): Promise<void> {
  await transaction(sql, async (tx) => {
    await lockGroup(tx, member.group);
    await tx`delete from tributary.group_members where group_name = ${member.group} and member_id = ${member.memberId}`;
    await rebalance(tx, member.group, releaseTimeoutMs);
  });
}

/** The member is done with partitions it lost (its last commit is in): the new owners may start. */
export async function release(sql: Sql, member: MemberIdentity, partitions: ReadonlyArray<{ stream: string; partition: number }>): Promise<void> {
  if (partitions.length === 0) return;
  const released = await sql`
    update tributary.group_assignments a
       set releasing_member = null, releasing_generation = null, release_deadline = null
      from unnest(${partitions.map((p) => p.stream)}::text[], ${partitions.map((p) => p.partition)}::int[]) as r(stream, partition)
     where a.group_name = ${member.group} and a.stream = r.stream and a.partition = r.partition
       and a.releasing_member = ${member.memberId}
    returning 1`;
  if (released.length > 0) await sql`select pg_notify(${GROUPS_CHANNEL}, ${member.group})`;
}

/** Serializes every change to a group's membership, assignment or offsets reset (until the transaction ends). */
export async function lockGroup(tx: Tx, group: string): Promise<void> {
  await tx`select pg_advisory_xact_lock(${GROUP_LOCK}, hashtext(${group}))`;
}

interface AssignmentRow {
  stream: string;
  partition: number;
  member_id: string;
  generation: string;
  releasing_member: string | null;
  releasing_generation: string | null;
  release_deadline_passed: boolean | null;
}

/** Expires silent members, recomputes the assignment and writes what changed. Returns whether anything did. */
async function rebalance(tx: Tx, group: string, releaseTimeoutMs: number): Promise<boolean> {
  const expired = await tx`
    delete from tributary.group_members
     where group_name = ${group} and heartbeat_at + session_timeout < now()
    returning member_id`;
  const members = await tx<{ member_id: string; streams: string[] }[]>`
    select member_id, streams from tributary.group_members where group_name = ${group}`;
  const alive = new Set(members.map((m) => m.member_id));
  const subscribed = [...new Set(members.flatMap((m) => m.streams))];
  const streams = await tx<{ name: string; partitions: number }[]>`
    select name, partitions from tributary.streams where name = any (${subscribed}::text[])`;
  const rows = await tx<AssignmentRow[]>`
    select stream, partition, member_id, generation::text, releasing_member, releasing_generation::text,
           release_deadline < now() as release_deadline_passed
      from tributary.group_assignments where group_name = ${group} for update`;

  const current = new Map(rows.filter((r) => alive.has(r.member_id)).map((r) => [partitionKey(r.stream, r.partition), r.member_id]));
  const desired = assignPartitions(streams, members.map((m) => ({ id: m.member_id, streams: m.streams })), current);

  const byKey = new Map(rows.map((r) => [partitionKey(r.stream, r.partition), r]));
  const changed: Array<{ stream: string; partition: number; member: string; releasing: string | null; releasingGeneration: string | null }> = [];
  for (const stream of streams) {
    for (let p = 0; p < stream.partitions; p++) {
      const key = partitionKey(stream.name, p);
      const owner = desired.get(key)!;
      const row = byKey.get(key);
      if (row && row.member_id === owner) continue;
      // Who must release first: a previous owner still mid-release (the
      // current owner has not started), else the current owner if it is
      // alive (it may be handling a batch right now).
      let releasing: string | null = null;
      let releasingGeneration: string | null = null;
      const stillReleasing = row?.releasing_member != null && alive.has(row.releasing_member) && !row.release_deadline_passed;
      if (stillReleasing) {
        if (row!.releasing_member !== owner) {
          releasing = row!.releasing_member;
          releasingGeneration = row!.releasing_generation;
        }
      } else if (row && alive.has(row.member_id)) {
        releasing = row.member_id;
        releasingGeneration = row.generation;
      }
      changed.push({ stream: stream.name, partition: p, member: owner, releasing, releasingGeneration });
    }
  }
  const orphaned = rows.filter((r) => !desired.has(partitionKey(r.stream, r.partition)));

  // Releases that can no longer happen (the releaser died) or took too long.
  const cleared = await tx`
    update tributary.group_assignments
       set releasing_member = null, releasing_generation = null, release_deadline = null
     where group_name = ${group} and releasing_member is not null
       and (release_deadline < now() or not (releasing_member = any (${[...alive]}::text[])))
    returning 1`;

  if (changed.length === 0 && orphaned.length === 0) {
    if (expired.length > 0 || cleared.length > 0) await tx`select pg_notify(${GROUPS_CHANNEL}, ${group})`;
    return expired.length > 0;
  }
  const [next] = await tx<{ generation: string }[]>`
    update tributary.consumer_groups set generation = generation + 1
     where group_name = ${group} returning generation::text`;
  if (orphaned.length > 0) {
    await tx`
      delete from tributary.group_assignments a
       using unnest(${orphaned.map((r) => r.stream)}::text[], ${orphaned.map((r) => r.partition)}::int[]) as o(stream, partition)
       where a.group_name = ${group} and a.stream = o.stream and a.partition = o.partition`;
  }
  if (changed.length > 0) {
    await tx`
      insert into tributary.group_assignments
             (group_name, stream, partition, member_id, generation, releasing_member, releasing_generation, release_deadline)
      select ${group}, c.stream, c.partition, c.member, ${next!.generation}::bigint, c.releasing, c.releasing_generation,
             case when c.releasing is null then null else now() + ${releaseTimeoutMs} * interval '1 millisecond' end
        from unnest(${changed.map((c) => c.stream)}::text[], ${changed.map((c) => c.partition)}::int[],
                    ${changed.map((c) => c.member)}::text[], ${changed.map((c) => c.releasing)}::text[],
                    ${changed.map((c) => c.releasingGeneration)}::bigint[])
             as c(stream, partition, member, releasing, releasing_generation)
      on conflict (group_name, stream, partition) do update
         set member_id = excluded.member_id, generation = excluded.generation,
             releasing_member = excluded.releasing_member, releasing_generation = excluded.releasing_generation,
             release_deadline = excluded.release_deadline`;
  }
  await tx`select pg_notify(${GROUPS_CHANNEL}, ${group})`;
  return true;
}

async function memberView(tx: Tx, member: MemberIdentity): Promise<Omit<HeartbeatResult, "rebalanced">> {
  const rows = await tx<{ stream: string; partition: number; member_id: string; generation: string; releasing_member: string | null; releasing_generation: string | null }[]>`
    select stream, partition, member_id, generation::text, releasing_member, releasing_generation::text
      from tributary.group_assignments
     where group_name = ${member.group} and (member_id = ${member.memberId} or releasing_member = ${member.memberId})
     order by stream, partition`;
  const [timing] = await tx<{ next_check_ms: number | null }[]>`
    select least(
             (select min(extract(epoch from (heartbeat_at + session_timeout - now())) * 1000)
                from tributary.group_members where group_name = ${member.group} and member_id <> ${member.memberId}),
             (select min(extract(epoch from (release_deadline - now())) * 1000)
                from tributary.group_assignments where group_name = ${member.group} and member_id = ${member.memberId}
                 and release_deadline is not null)
           )::float8 as next_check_ms`;
  return {
    owned: rows.filter((r) => r.member_id === member.memberId).map((r) => ({
      stream: r.stream, partition: r.partition, generation: Number(r.generation), ready: r.releasing_member === null,
    })),
    releasing: rows.filter((r) => r.releasing_member === member.memberId).map((r) => ({
      stream: r.stream, partition: r.partition, generation: Number(r.releasing_generation),
    })),
    nextCheckMs: timing?.next_check_ms ?? null,
  };
}
