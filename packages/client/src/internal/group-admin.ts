/**
 * Consumer-group administration: what an operator reads and changes from
 * outside the group (`tributary groups`). The group protocol itself (join,
 * heartbeat, rebalance, commit) lives in ./consumer/.
 *
 * describeGroups reads members, assignments and the lag view
 * (`tributary.group_lag`, migrations/0002_consumer_groups.sql).
 *
 * resetGroupOffsets moves a group's committed positions on one stream, every
 * partition in one transaction. It must not run under live members: a member
 * keeps its position in memory and would commit over the reset (Kafka's
 * kafka-consumer-groups --reset-offsets refuses a non-empty group for the
 * same reason). What must stay true:
 *   - It runs under the group's advisory lock, the one every membership
 *     change takes (consumer/membership.ts), so no member joins or
 *     heartbeats between the liveness check and the write.
 *   - It deletes the stream's assignments (all held by members whose session
 *     timed out, or it would have refused). A timed-out member may still be
 *     running (paused, cut off): without its assignment row its commits are
 *     rejected (consumer/offsets.ts), and if it heartbeats again the
 *     rebalance gives it the partitions under a new generation, so it drops
 *     its in-memory position and loads the reset offsets (invariant 8).
 */
import type { Sql, TransactionSql } from "postgres";
import { transaction } from "./connection/transaction.ts";
import { lockGroup } from "./consumer/membership.ts";
import { TributaryGroupError } from "./errors.ts";
import type { StartPosition } from "./reader.ts";

export interface GroupMemberDescription {
  readonly memberId: string;
  readonly client: string | null;
  readonly streams: readonly string[];
  readonly joinedAt: Date;
  readonly heartbeatAt: Date;
  readonly sessionTimeoutMs: number;
  /** heartbeat_at + session_timeout > now(), by the database's clock. */
  readonly alive: boolean;
}

export interface GroupPartitionDescription {
  readonly stream: string;
  readonly partition: number;
  /** The member the partition is assigned to (alive or not), null if unassigned. */
  readonly owner: string | null;
  readonly generation: number | null;
  /** The previous owner while a hand-off is in progress. */
  readonly releasingMember: string | null;
  /** The next offset the group will handle (Kafka semantics); null if nothing was ever committed. */
  readonly committedOffset: number | null;
  /** The partition's end: the offset the next event will get. */
  readonly endOffset: number;
  /** endOffset - committedOffset (from 0 when nothing was committed). */
  readonly lag: number;
  readonly committedAt: Date | null;
  /** The partition's first retained offset (retention, migration 0011; 0 before it or where nothing expired). */
  readonly lowWatermark: number;
  /** The committed offset is below the low watermark: retention dropped events the group had not handled. */
  readonly behindRetention: boolean;
}

export interface GroupDescription {
  readonly group: string;
  readonly generation: number;
  readonly createdAt: Date;
  readonly members: readonly GroupMemberDescription[];
  /** Every partition of every stream a member subscribes to or the group has offsets on. */
  readonly partitions: readonly GroupPartitionDescription[];
  readonly lag: number;
}


/** The consumer_groups check (migration 0002), refused before any round trip: by consumer() and the administration. */
const groupNamePattern = /^[A-Za-z0-9._-]{1,200}$/;

export function checkGroupName(group: string): void {
  if (typeof group !== "string" || !groupNamePattern.test(group)) {
    throw new TributaryGroupError(
      "INVALID_GROUP_NAME",
      `invalid group name ${JSON.stringify(group)}: a group name is 1 to 200 characters of A-Z a-z 0-9 . _ -`,
    );
  }
}

/**
 * Every group (or only `group`, which must exist: UNKNOWN_GROUP) with its
 * members, and per partition its owner, committed offset, end and lag.
 */
/** Low watermarks by "stream/partition", where above 0; none on a schema before migration 0011. */
async function lowWatermarksOf(sql: Sql | TransactionSql, streams: string[]): Promise<Map<string, number>> {
  const [schema] = await sql<{ ok: boolean }[]>`select to_regclass('tributary.low_watermarks') is not null as ok`;
  if (!schema!.ok || streams.length === 0) return new Map();
  const rows = await sql<{ stream: string; partition: number; low_watermark: string }[]>`
    select stream, partition, low_watermark::text from tributary.low_watermarks where stream = any (${streams}::text[]) and low_watermark > 0`;
  return new Map(rows.map((r) => [`${r.stream}/${r.partition}`, Number(r.low_watermark)]));
}

export async function describeGroups(sql: Sql | TransactionSql, options: { group?: string } = {}): Promise<GroupDescription[]> {
  const only = options.group;
  if (only !== undefined) checkGroupName(only);
  const filter = only === undefined ? sql`true` : sql`group_name = ${only}`;
  const groups = await sql<{ group_name: string; generation: string; created_at: Date }[]>`
    select group_name, generation::text, created_at from tributary.consumer_groups where ${filter} order by group_name`;
  if (only !== undefined && groups.length === 0) {
    throw new TributaryGroupError("UNKNOWN_GROUP", `consumer group '${only}' does not exist (no member has joined it and no offsets were reset for it).`);
  }
  const members = await sql<{
    group_name: string; member_id: string; client: string | null; streams: string[];
    joined_at: Date; heartbeat_at: Date; session_timeout_ms: number; alive: boolean;
  }[]>`
    select group_name, member_id, client, streams, joined_at, heartbeat_at,
           (extract(epoch from session_timeout) * 1000)::float8 as session_timeout_ms,
           heartbeat_at + session_timeout > now() as alive
      from tributary.group_members where ${filter}
     order by group_name, joined_at, member_id`;
  const partitions = await sql<{
    group_name: string; stream: string; partition: number; member_id: string | null; generation: string | null;
    releasing_member: string | null; committed_offset: string; end_offset: string; lag: string; committed_at: Date | null;
  }[]>`
    select l.group_name, l.stream, l.partition, l.member_id, l.generation::text, a.releasing_member,
           l.committed_offset::text, l.end_offset::text, l.lag::text, l.committed_at
      from tributary.group_lag l
      left join tributary.group_assignments a
        on a.group_name = l.group_name and a.stream = l.stream and a.partition = l.partition
     where ${only === undefined ? sql`true` : sql`l.group_name = ${only}`}
     order by l.group_name, l.stream, l.partition`;
  const watermarks = await lowWatermarksOf(sql, [...new Set(partitions.map((p) => p.stream))]);
  return groups.map((g) => {
    const own = partitions.filter((p) => p.group_name === g.group_name).map((p): GroupPartitionDescription => ({
      stream: p.stream,
      partition: p.partition,
      owner: p.member_id,
      generation: p.generation === null ? null : Number(p.generation),
      releasingMember: p.releasing_member,
      // group_offsets.committed_at is not null, so a null here means no row.
      committedOffset: p.committed_at === null ? null : Number(p.committed_offset),
      endOffset: Number(p.end_offset),
      lag: Number(p.lag),
      committedAt: p.committed_at,
      lowWatermark: watermarks.get(`${p.stream}/${p.partition}`) ?? 0,
      behindRetention: p.committed_at !== null && Number(p.committed_offset) < (watermarks.get(`${p.stream}/${p.partition}`) ?? 0),
    }));
    return {
      group: g.group_name,
      generation: Number(g.generation),
      createdAt: g.created_at,
      members: members.filter((m) => m.group_name === g.group_name).map((m) => ({
        memberId: m.member_id,
        client: m.client,
        streams: m.streams,
        joinedAt: m.joined_at,
        heartbeatAt: m.heartbeat_at,
        sessionTimeoutMs: m.session_timeout_ms,
        alive: m.alive,
      })),
      partitions: own,
      lag: own.reduce((sum, p) => sum + p.lag, 0),
    };
  });
}

/** Where to move a group: "earliest" (the low watermark), "latest" (each partition's end), one offset for every partition, or a time. */
export type ResetTarget = StartPosition;

export interface PartitionReset {
  readonly partition: number;
  /** The committed offset before the reset; null if the group had none on this partition. */
  readonly previous: number | null;
  readonly next: number;
}

export interface GroupReset {
  readonly group: string;
  readonly stream: string;
  /** True when the reset created the group. */
  readonly createdGroup: boolean;
  readonly partitions: readonly PartitionReset[];
}

function checkTarget(to: ResetTarget): void {
  if (to === "earliest" || to === "latest") return;
  if (typeof to === "number") {
    if (!Number.isSafeInteger(to) || to < 0) {
      throw new TributaryGroupError("INVALID_RESET_TARGET", `invalid offset ${to}: an offset is an integer from 0`);
    }
    return;
  }
  if (to instanceof Date) {
    if (Number.isNaN(to.getTime())) throw new TributaryGroupError("INVALID_RESET_TARGET", "invalid time: the Date is not a valid time");
    return;
  }
  throw new TributaryGroupError("INVALID_RESET_TARGET", `invalid reset target ${JSON.stringify(to)}: use "earliest", "latest", an offset or a Date`);
}

/**
 * Sets the group's committed offset (the next offset it will handle) on every
 * partition of `stream`, in one transaction:
 *   "earliest"  each partition's low watermark (its first retained offset)
 *   "latest"    each partition's end: the group skips everything so far
 *   a number    that offset on every partition; beyond a partition's end is
 *               OFFSET_OUT_OF_RANGE (naming the partition and its end)
 *   a Date      per partition, the first event committed at or after it,
 *               else the partition's end
 *
 * A group that does not exist yet is created: resetting a group before its
 * first run is how one starts it at a chosen position. An unknown stream is
 * UNKNOWN_STREAM. Refused with GROUP_HAS_LIVE_MEMBERS while a member
 * subscribed to the stream (or holding one of its partitions) is alive (its
 * heartbeat within its session timeout): stop it, or wait for its session to
 * time out, then reset. The stream's partition assignments are dropped, which
 * fences members that timed out but still run; the next heartbeat of the
 * group reassigns them under a new generation.
 */
export async function resetGroupOffsets(sql: Sql, options: { group: string; stream: string; to: ResetTarget }): Promise<GroupReset> {
  const { group, stream, to } = options;
  checkGroupName(group);
  checkTarget(to);
  return transaction(sql, async (tx) => {
    const [streamRow] = await tx<{ partitions: number }[]>`select partitions from tributary.streams where name = ${stream}`;
    if (!streamRow) {
      throw new TributaryGroupError("UNKNOWN_STREAM", `stream '${stream}' does not exist: check the name (tributary.streams lists the streams).`);
    }
    await lockGroup(tx, group);
    const created = await tx`
      insert into tributary.consumer_groups (group_name) values (${group}) on conflict (group_name) do nothing returning 1`;
    await refuseLiveMembers(tx, group, stream);
    // Fences timed-out members that may still be running (see the module doc).
    await tx`delete from tributary.group_assignments where group_name = ${group} and stream = ${stream}`;

    const current = await tx<{ partition: number; previous: string | null; end_offset: string; at_time: string | null; low_watermark: string }[]>`
      select p.partition,
             o.next_offset::text as previous,
             coalesce(po.next_offset, 0)::text as end_offset,
             ${to instanceof Date ? tx`tributary.first_offset_at(${stream}, p.partition, ${to})::text` : tx`null::text`} as at_time,
             coalesce(w.low_watermark, 0)::text as low_watermark
        from generate_series(0, ${streamRow.partitions}::int - 1) as p(partition)
        left join tributary.group_offsets o on o.group_name = ${group} and o.stream = ${stream} and o.partition = p.partition
        left join tributary.partition_offsets po on po.stream = ${stream} and po.partition = p.partition
        left join tributary.low_watermarks w on w.stream = ${stream} and w.partition = p.partition
       order by p.partition`;
    const partitions = current.map((row): PartitionReset => {
      const end = Number(row.end_offset);
      let next: number;
      const low = Number(row.low_watermark);
      if (to === "earliest") next = low;
      else if (to === "latest") next = end;
      else if (to instanceof Date) next = row.at_time === null ? end : Number(row.at_time);
      else {
        if (to < low) {
          throw new TributaryGroupError(
            "OFFSET_OUT_OF_RANGE",
            `offset ${to} is below the low watermark of stream '${stream}' partition ${row.partition} (${low}): retention dropped the events before it. ` +
              `Use an offset from ${low} to ${end}, or reset to earliest (each partition's low watermark). Nothing was changed.`,
          );
        }
        if (to > end) {
          throw new TributaryGroupError(
            "OFFSET_OUT_OF_RANGE",
            `offset ${to} is beyond the end of stream '${stream}' partition ${row.partition} (end ${end}): ` +
              `use an offset from 0 to ${end}, or reset to latest (each partition's end). Nothing was changed.`,
          );
        }
        next = to;
      }
      return { partition: row.partition, previous: row.previous === null ? null : Number(row.previous), next };
    });
    await tx`
      insert into tributary.group_offsets (group_name, stream, partition, next_offset, committed_at)
      select ${group}, ${stream}, p, n, now()
        from unnest(${partitions.map((p) => p.partition)}::int[], ${partitions.map((p) => String(p.next))}::bigint[]) as t(p, n)
      on conflict (group_name, stream, partition)
      do update set next_offset = excluded.next_offset, committed_at = excluded.committed_at`;
    return { group, stream, createdGroup: created.length > 0, partitions };
  }) as Promise<GroupReset>;
}

async function refuseLiveMembers(tx: TransactionSql, group: string, stream: string): Promise<void> {
  const live = await tx<{ member_id: string; client: string | null; seconds_left: number }[]>`
    select m.member_id, m.client,
           ceil(extract(epoch from m.heartbeat_at + m.session_timeout - now()))::float8 as seconds_left
      from tributary.group_members m
     where m.group_name = ${group} and m.heartbeat_at + m.session_timeout > now()
       and (${stream} = any (m.streams)
            or exists (select 1 from tributary.group_assignments a
                        where a.group_name = ${group} and a.stream = ${stream}
                          and (a.member_id = m.member_id or a.releasing_member = m.member_id)))
     order by m.joined_at, m.member_id`;
  if (live.length === 0) return;
  const who = live.map((m) => `${m.member_id}${m.client ? ` (${m.client})` : ""}`).join(", ");
  const wait = Math.max(...live.map((m) => m.seconds_left));
  throw new TributaryGroupError(
    "GROUP_HAS_LIVE_MEMBERS",
    `consumer group '${group}' has ${live.length} live member${live.length === 1 ? "" : "s"} subscribed to stream '${stream}': ${who}. ` +
      `A live member keeps its position in memory and would commit over the reset. ` +
      `Stop ${live.length === 1 ? "it" : "them"} and reset again, or wait for ${live.length === 1 ? "its" : "their"} session timeout ` +
      `(${wait} s from now if no heartbeat arrives). Nothing was changed.`,
  );
}
