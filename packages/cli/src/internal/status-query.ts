import type { Sql } from "postgres";

export interface StreamStatus {
  stream: string;
  partitions: number;
  events: number;
}

export interface RelayStatus {
  slot: string;
  plugin: string;
  active: boolean;
  lagBytes: number | null;
  walRetainedBytes: number | null;
  walStatus: string | null;
  checkpointLsn: string;
  checkpointAt: string;
  relayId: string | null;
}

export interface Status {
  streams: StreamStatus[];
  relays: RelayStatus[];
}

/** One consistent read of streams and relay slots for `tributary status` and the dev status line. */
export async function readStatus(sql: Sql): Promise<Status> {
  const streams = await sql<{ stream: string; partitions: number; events: string }[]>`
    select s.name as stream, s.partitions, coalesce(sum(o.next_offset), 0)::text as events
      from tributary.streams s left join tributary.partition_offsets o on o.stream = s.name
     group by s.name, s.partitions order by s.name`;
  const relays = await sql<{
    slot: string; plugin: string; active: boolean | null; lag: string | null; retained: string | null;
    wal_status: string | null; end_lsn: string; updated_at: Date; relay_id: string | null;
  }[]>`
    select c.slot_name as slot, c.plugin, r.active,
           (pg_current_wal_lsn() - r.confirmed_flush_lsn)::text as lag,
           (pg_current_wal_lsn() - r.restart_lsn)::text as retained,
           r.wal_status, c.end_lsn::text, c.updated_at, c.relay_id
      from tributary.relay_checkpoints c
      left join pg_replication_slots r on r.slot_name = c.slot_name
     order by c.slot_name`;
  return {
    streams: streams.map((s) => ({ stream: s.stream, partitions: s.partitions, events: Number(s.events) })),
    relays: relays.map((r) => ({
      slot: r.slot,
      plugin: r.plugin,
      active: r.active ?? false,
      lagBytes: r.lag === null ? null : Number(r.lag),
      walRetainedBytes: r.retained === null ? null : Number(r.retained),
      walStatus: r.wal_status,
      checkpointLsn: r.end_lsn,
      checkpointAt: r.updated_at.toISOString(),
      relayId: r.relay_id,
    })),
  };
}

export function formatBytes(n: number | null): string {
  if (n === null) return "-";
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)} MB`;
  return `${(n / (1 << 30)).toFixed(2)} GB`;
}
