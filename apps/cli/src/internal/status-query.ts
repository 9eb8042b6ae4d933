import type { Sql } from "postgres";
import { describeGroups, describeQueues } from "@tributary/client";
import { defaultSlotAlarmSettings, slotAlarms, walKeepAlarm, type SlotAlarmSettings } from "@tributary/client/internals";
import { RELAY_CANDIDATE_LOCK, RELAY_LOCK } from "@tributary/core";
import { hasCaptures, listCaptures } from "./capture-query.ts";

export interface StreamStatus {
  stream: string;
  partitions: number;
  /** Events ever appended (the partitions' ends). */
  events: number;
  /** Events still kept: the partitions' ends less their low watermarks (migration 0011; absent before). */
  retained?: number;
  /** Each partition's first retained offset, by partition (migration 0011; absent before). */
  lowWatermarks?: number[];
  /** The stream's segments, table and indexes, in bytes (absent before migration 0010). */
  bytes?: number;
  /** What the stream keeps (tributary.set_retention); null: everything. Absent before migration 0011. */
  retention?: { maxAge: string | null; maxBytes: number | null; maxEvents: number | null; protectGroup: string | null } | null;
}

export interface RelayStatus {
  slot: string;
  plugin: string;
  /** A relay holds the slot's advisory lock, (RELAY_LOCK, hashtext(slot)). */
  active: boolean;
  /**
   * "active" (a relay holds the lock and renews its lease), "stalled" (a relay
   * holds the lock but its lease expired: frozen or hung; a standby takes it
   * over), "idle" (no relay), or "lost" (the slot is gone or its WAL was removed).
   */
  state: "active" | "stalled" | "idle" | "lost";
  /**
   * Relays waiting to take over this slot from its active relay: holders of
   * the slot's RELAY_CANDIDATE_LOCK that do not hold its RELAY_LOCK. 0 when
   * no relay is active.
   */
  standbys: number;
  /** WAL not yet acknowledged by the relay: pg_current_wal_lsn() - confirmed_flush_lsn. */
  lagBytes: number | null;
  /**
   * When lagBytes > 0: with a relay streaming, the server's flush_lag for its
   * walsender (how long WAL takes to be relayed and acknowledged; 0 once idle);
   * with none, seconds since the relay last wrote a batch. Else 0.
   */
  lagSeconds: number | null;
  /** WAL the server keeps for the slot: pg_current_wal_lsn() - restart_lsn. */
  walRetainedBytes: number | null;
  walStatus: string | null;
  checkpointLsn: string;
  checkpointAt: string;
  relayId: string | null;
}

export interface GroupStatus {
  group: string;
  generation: number;
  members: number;
  aliveMembers: number;
  /** Events in the group's streams it has not handled yet (tributary.group_lag). */
  lag: number;
}

/** A queue's messages by state (the client's describeQueues) and its live workers. */
export interface QueueStatus {
  queue: string;
  /** The depth: messages a claim may take now. */
  ready: number;
  inFlight: number;
  delayed: number;
  dead: number;
  /** Seconds since the oldest ready message was sent. */
  oldestReadyAgeSeconds: number | null;
  /** Workers with a heartbeat in the last 15 s. */
  workers: number;
  /** Messages acked per second by those workers, each averaged over its life so far. */
  succeededPerSecond: number | null;
}

/** A captured table's latest capture (tributary.captures). */
export interface CaptureStatus {
  table: string;
  stream: string;
  state: "snapshotting" | "streaming" | "stopped";
  /** While snapshotting: rows read so far of about rowsEstimated (the planner's estimate when it was asked). */
  rowsDone: number;
  rowsEstimated: number | null;
  /** A backfill's WHERE condition (rowsEstimated counts the whole table). */
  snapshotFilter: string | null;
  stopReason: string | null;
}

/** Committed messages the relay set aside (tributary.rejected_messages), by reason. */
export interface RejectedStatus {
  reason: string;
  count: number;
  latestAt: string;
  latestDetail: string;
}

export interface Status {
  streams: StreamStatus[];
  /** What an operator must look at: set-aside messages, stalled or lost relays. */
  alarms: string[];
  rejected: RejectedStatus[];
  relays: RelayStatus[];
  /** Relays of this database waiting for a slot's lock, whatever the slot. */
  standbyRelays: number;
  groups: GroupStatus[];
  /** Absent when the schema predates queues (migration 0003 not applied). */
  queues?: QueueStatus[];
  /** Absent when the schema predates table capture (migration 0009 not applied). */
  captures?: CaptureStatus[];
}

/** Whether this database's schema has queues (migration 0003 applied). */
export async function hasQueues(sql: Sql): Promise<boolean> {
  const [row] = await sql<{ ok: boolean }[]>`select to_regclass('tributary.queues') is not null as ok`;
  return row!.ok;
}

/** One read of streams, relay slots, consumer groups, queues and captures for `tributary status` and the dev status line. */
export async function readStatus(sql: Sql, alarmSettings: SlotAlarmSettings = defaultSlotAlarmSettings): Promise<Status> {
  const streams = await sql<{ stream: string; partitions: number; events: string }[]>`
    select s.name as stream, s.partitions, coalesce(sum(o.next_offset), 0)::text as events
      from tributary.streams s left join tributary.partition_offsets o on o.stream = s.name
     group by s.name, s.partitions order by s.name`;
  const storage = await readStorage(sql);
  // Migration 0006 added the set-aside messages and the relay lease.
  const [trustedRow] = await sql<{ ok: boolean }[]>`select to_regclass('tributary.rejected_messages') is not null as ok`;
  const trusted = trustedRow!.ok;
  // The relays' locks, per slot (docs/ARCHITECTURE.md "Advisory locks and
  // NOTIFY channels"): the active relay holds (RELAY_LOCK, hashtext(slot)),
  // and every relay of the slot, active or standby, holds
  // (RELAY_CANDIDATE_LOCK, hashtext(slot)) shared. A two-key advisory lock
  // shows in pg_locks as classid = key 1, objid = key 2 (as an unsigned oid),
  // objsubid = 2. One read of pg_locks, so active and standbys agree.
  const relayLocks = await sql<{ slot_key: string; active: boolean; standbys: number }[]>`
    with held as (
      select l.pid, l.classid, l.objid from pg_locks l
       where l.locktype = 'advisory' and l.granted and l.objsubid = 2
         and l.database = (select oid from pg_database where datname = current_database())
         and l.classid in (${RELAY_LOCK}::bigint::oid, ${RELAY_CANDIDATE_LOCK}::bigint::oid)
    )
    select h.objid::text as slot_key,
           bool_or(h.classid = ${RELAY_LOCK}::bigint::oid) as active,
           (count(*) filter (where h.classid = ${RELAY_CANDIDATE_LOCK}::bigint::oid and not exists (
              select 1 from held a where a.pid = h.pid and a.objid = h.objid and a.classid = ${RELAY_LOCK}::bigint::oid)))::int as standbys
      from held h
     group by h.objid`;
  const locksBySlotKey = new Map(relayLocks.map((l) => [l.slot_key, l]));
  const relayRows = await sql<{
    slot: string; plugin: string; slot_key: string; slot_exists: boolean; lag: string | null; lag_seconds: number | null;
    retained: string | null; wal_status: string | null; end_lsn: string; updated_at: Date; relay_id: string | null;
    since_checkpoint: number; lease_expired: boolean | null;
  }[]>`
    select c.slot_name as slot, c.plugin,
           (hashtext(c.slot_name)::bigint & 4294967295)::text as slot_key,
           r.slot_name is not null as slot_exists,
           (pg_current_wal_lsn() - r.confirmed_flush_lsn)::text as lag,
           case when r.confirmed_flush_lsn is null then null
                when pg_current_wal_lsn() <= r.confirmed_flush_lsn then 0
                -- A relay streaming: how long WAL takes to be acknowledged (the server's own measure).
                when sr.pid is not null then coalesce(extract(epoch from sr.flush_lag), 0)::float8
                -- No relay: the time since it last wrote a batch.
                else extract(epoch from now() - c.updated_at)::float8 end as lag_seconds,
           (pg_current_wal_lsn() - r.restart_lsn)::text as retained,
           r.wal_status, c.end_lsn::text, c.updated_at, c.relay_id,
           extract(epoch from now() - c.updated_at)::float8 as since_checkpoint,
           ${trusted ? sql`(select le.expires_at < now() from tributary.relay_leases le where le.slot_name = c.slot_name)` : sql`null::boolean`} as lease_expired
      from tributary.relay_checkpoints c
      left join pg_replication_slots r on r.slot_name = c.slot_name
      left join lateral (select s.pid, s.flush_lag from pg_stat_replication s where s.pid = r.active_pid) sr on true
     order by c.slot_name`;
  const relays = relayRows.map((r) => {
    const locks = locksBySlotKey.get(r.slot_key);
    return { ...r, locked: locks?.active ?? false, standbys: locks?.active ? locks.standbys : 0 };
  });
  const [hasGroups] = await sql<{ ok: boolean }[]>`select to_regclass('tributary.consumer_groups') is not null as ok`;
  const groups = hasGroups!.ok ? await describeGroups(sql) : [];
  const queues = (await hasQueues(sql)) ? await describeQueues(sql) : null;
  const captures = (await hasCaptures(sql)) ? await listCaptures(sql) : null;
  const rejected = trusted
    ? await sql<{ reason: string; count: number; latest_at: Date; latest_detail: string }[]>`
        select reason, count(*)::int as count, max(rejected_at) as latest_at,
               (array_agg(detail order by id desc))[1] as latest_detail
          from tributary.rejected_messages group by reason order by reason`
    : [];
  const standbyRelays = relayLocks.reduce((n, l) => n + l.standbys, 0);
  const [keep] = await sql<{ value: string }[]>`select current_setting('max_slot_wal_keep_size') as value`;
  const stateOf = (r: (typeof relays)[number]): RelayStatus["state"] =>
    !r.slot_exists || r.wal_status === "lost" ? "lost" : r.locked ? (r.lease_expired ? "stalled" : "active") : "idle";
  const alarms = [
    ...rejected.map((r) => `${r.count} committed message(s) set aside as ${r.reason} (tributary.rejected_messages), latest at ${r.latest_at.toISOString()}: ${r.latest_detail}`),
    ...relays.filter((r) => stateOf(r) === "stalled").map((r) => `relay ${r.relay_id ?? "?"} holds slot '${r.slot}' but stopped renewing its lease: frozen or hung (a standby takes it over)`),
    ...relays.filter((r) => stateOf(r) === "lost").map((r) => `slot '${r.slot}' is lost: events may be missing; the relay will not start (see its error)`),
    ...relays.filter((r) => stateOf(r) !== "lost").flatMap((r) => slotAlarms({
      slot: r.slot,
      walRetainedBytes: r.retained === null ? null : Number(r.retained),
      walStatus: r.wal_status,
      active: r.locked,
      inactiveSeconds: r.locked ? null : r.since_checkpoint,
    }, alarmSettings).map((a) => a.message)),
    ...(relays.length > 0 ? [walKeepAlarm(keep!.value, alarmSettings)?.message].filter((m): m is string => m !== undefined) : []),
  ];
  return {
    streams: streams.map((s) => ({ stream: s.stream, partitions: s.partitions, events: Number(s.events), ...storage.get(s.stream) })),
    alarms,
    rejected: rejected.map((r) => ({ reason: r.reason, count: r.count, latestAt: r.latest_at.toISOString(), latestDetail: r.latest_detail })),
    relays: relays.map((r) => ({
      slot: r.slot,
      plugin: r.plugin,
      active: r.locked,
      state: stateOf(r),
      standbys: r.standbys,
      lagBytes: r.lag === null ? null : Number(r.lag),
      lagSeconds: r.lag_seconds,
      walRetainedBytes: r.retained === null ? null : Number(r.retained),
      walStatus: r.wal_status,
      checkpointLsn: r.end_lsn,
      checkpointAt: r.updated_at.toISOString(),
      relayId: r.relay_id,
    })),
    standbyRelays,
    groups: groups.map((g) => ({
      group: g.group,
      generation: g.generation,
      members: g.members.length,
      aliveMembers: g.members.filter((m) => m.alive).length,
      lag: g.lag,
    })),
    ...(queues === null ? {} : {
      queues: queues.map((q) => ({
        queue: q.queue,
        ready: q.ready,
        inFlight: q.inFlight,
        delayed: q.delayed,
        dead: q.dead,
        oldestReadyAgeSeconds: q.oldestReadyAgeSeconds,
        workers: q.liveWorkers,
        succeededPerSecond: q.succeededPerSecond,
      })),
    }),
    ...(captures === null ? {} : {
      captures: captures.map((c) => ({
        table: c.table, stream: c.stream, state: c.state, rowsDone: c.rowsDone, rowsEstimated: c.rowsEstimated, snapshotFilter: c.snapshotFilter, stopReason: c.stopReason,
      })),
    }),
  };
}

export function formatBytes(n: number | null): string {
  if (n === null) return "-";
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)} MB`;
  return `${(n / (1 << 30)).toFixed(2)} GB`;
}

export function formatSeconds(s: number | null): string {
  if (s === null) return "-";
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function formatRate(perSecond: number | null): string {
  if (perSecond === null) return "-";
  return `${perSecond < 10 ? perSecond.toFixed(1) : Math.round(perSecond)}/s`;
}

/** Each stream's size, retained events and retention (migrations 0010 and 0011), by stream; empty on an older schema. */
type Storage = Pick<StreamStatus, "retained" | "lowWatermarks" | "bytes" | "retention">;

async function readStorage(sql: Sql): Promise<Map<string, Storage>> {
  const [schema] = await sql<{ segments: boolean; retention: boolean }[]>`
    select to_regclass('tributary.segments') is not null as segments, to_regclass('tributary.retention') is not null as retention`;
  const found = new Map<string, Storage>();
  if (!schema!.segments) return found;
  const sizes = await sql<{ stream: string; bytes: string }[]>`
    -- to_regclass: a segment retention drops meanwhile counts as nothing, not as an error.
    select stream, coalesce(sum(pg_total_relation_size(to_regclass(format('tributary.%I', table_name)))), 0)::text as bytes
      from tributary.segments group by stream`;
  for (const r of sizes) found.set(r.stream, { bytes: Number(r.bytes) });
  if (!schema!.retention) return found;
  const kept = await sql<{ stream: string; retained: string; low: string[]; max_age: string | null; max_bytes: string | null; max_events: string | null; protect_group: string | null; limited: boolean }[]>`
    select s.name as stream,
           array(select w.low_watermark::text from tributary.low_watermarks w where w.stream = s.name order by w.partition) as low,
           (coalesce((select sum(o.next_offset) from tributary.partition_offsets o where o.stream = s.name), 0)
             - coalesce((select sum(w.low_watermark) from tributary.low_watermarks w where w.stream = s.name), 0))::text as retained,
           r.max_age::text, r.max_bytes::text, r.max_events::text, r.protect_group, r.stream is not null as limited
      from tributary.streams s left join tributary.retention r on r.stream = s.name`;
  for (const r of kept) {
    found.set(r.stream, {
      ...found.get(r.stream),
      retained: Number(r.retained),
      lowWatermarks: r.low.map(Number),
      retention: r.limited
        ? { maxAge: r.max_age, maxBytes: r.max_bytes === null ? null : Number(r.max_bytes), maxEvents: r.max_events === null ? null : Number(r.max_events), protectGroup: r.protect_group }
        : null,
    });
  }
  return found;
}
