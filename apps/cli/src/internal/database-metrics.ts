/**
 * `tributary metrics`: the database-wide figures as Prometheus metrics, for
 * operators who run no Tributary process of their own (README "Metrics").
 * Each scrape is one read of what `tributary status` and `tributary groups`
 * show (readStatus, describeGroups): a fixed number of queries whatever the
 * number of streams, groups or queues. A database that does not answer is
 * `tributary_database_up 0` and nothing else, not a failed scrape.
 */
import type { Sql } from "postgres";
import { Counter, Gauge, type Registry } from "prom-client";
import { describeGroups, type GroupDescription } from "@tributary/client";
import { oncePerScrape } from "@tributary/core";
import { readStatus, type Status } from "./status-query.ts";

const WAL_STATUSES = ["reserved", "extended", "unreserved", "lost"] as const;

interface Figures {
  status: Status;
  groups: readonly GroupDescription[];
}

type Labels<K extends string> = Record<K, string | number>;

/** A gauge (or counter, for what only grows) set from each scrape's figures. */
function figure<K extends string>(
  registry: Registry, read: () => Promise<Figures | null>, kind: "gauge" | "counter",
  name: string, help: string, labelNames: readonly K[],
  values: (f: Figures) => Iterable<[Labels<K>, number | null]>,
): void {
  const Metric = kind === "gauge" ? Gauge : Counter;
  new Metric({
    name, help, labelNames, registers: [registry],
    async collect(this: Gauge<K> | Counter<K>) {
      this.reset();
      const f = await read();
      if (f === null) return;
      for (const [labels, value] of values(f)) {
        if (value === null) continue;
        if (this instanceof Gauge) this.set(labels, value);
        else this.inc(labels, value);
      }
    },
  });
}

export function registerDatabaseMetrics(registry: Registry, sql: Sql): void {
  // The metrics of one scrape collect together: one read serves them all.
  let lastError: string | null = null;
  const read = oncePerScrape((): Promise<Figures | null> =>
    (async () => ({ status: await readStatus(sql), groups: await describeGroups(sql) }))().then(
      (f) => { lastError = null; return f; },
      (error: unknown) => { lastError = (error as Error)?.message ?? String(error); return null; },
    ));
  new Gauge({
    name: "tributary_database_up", help: "1 when the last scrape read the database's figures, 0 when it could not (the exporter's log says why).", registers: [registry],
    async collect() {
      const ok = (await read()) !== null;
      if (!ok && lastError) console.error(`tributary metrics: reading the database failed: ${lastError}`);
      this.set(ok ? 1 : 0);
    },
  });
  figure(registry, read, "counter", "tributary_stream_events_total", "Events ever appended to the stream (the sum of its partitions' end offsets).", ["stream"],
    (f) => f.status.streams.map((s) => [{ stream: s.stream }, s.events]));
  figure(registry, read, "gauge", "tributary_stream_retained_events", "Events the stream still keeps (retention dropped the others).", ["stream"],
    (f) => f.status.streams.map((s) => [{ stream: s.stream }, s.retained ?? null]));
  figure(registry, read, "gauge", "tributary_stream_size_bytes", "The stream's segments, tables and indexes.", ["stream"],
    (f) => f.status.streams.map((s) => [{ stream: s.stream }, s.bytes ?? null]));
  figure(registry, read, "gauge", "tributary_stream_partitions", "The stream's partition count.", ["stream"],
    (f) => f.status.streams.map((s) => [{ stream: s.stream }, s.partitions]));

  figure(registry, read, "gauge", "tributary_slot_active_relays", "1 when a relay holds the slot's lock (the active relay), else 0.", ["slot"],
    (f) => f.status.relays.map((r) => [{ slot: r.slot }, r.active ? 1 : 0]));
  figure(registry, read, "gauge", "tributary_slot_standby_relays", "Relays waiting to take the slot over.", ["slot"],
    (f) => f.status.relays.map((r) => [{ slot: r.slot }, r.standbys]));
  figure(registry, read, "gauge", "tributary_slot_lag_bytes", "WAL the slot's relay has not acknowledged: pg_current_wal_lsn() - confirmed_flush_lsn.", ["slot"],
    (f) => f.status.relays.map((r) => [{ slot: r.slot }, r.lagBytes]));
  figure(registry, read, "gauge", "tributary_slot_lag_seconds", "With a relay streaming, its walsender's flush_lag; with none, the seconds since the relay last wrote a batch (0 when caught up).", ["slot"],
    (f) => f.status.relays.map((r) => [{ slot: r.slot }, r.lagSeconds]));
  figure(registry, read, "gauge", "tributary_slot_retained_wal_bytes", "WAL the server keeps for the slot: pg_current_wal_lsn() - restart_lsn.", ["slot"],
    (f) => f.status.relays.map((r) => [{ slot: r.slot }, r.walRetainedBytes]));
  figure(registry, read, "gauge", "tributary_slot_wal_status", "1 for the slot's current wal_status, 0 for the others.", ["slot", "status"],
    (f) => f.status.relays.flatMap((r) => r.walStatus === null ? [] : WAL_STATUSES.map((s): [Labels<"slot" | "status">, number] => [{ slot: r.slot, status: s }, r.walStatus === s ? 1 : 0])));
  figure(registry, read, "gauge", "tributary_rejected_messages", "Committed messages set aside in tributary.rejected_messages, by reason.", ["reason"],
    (f) => f.status.rejected.map((r) => [{ reason: r.reason }, r.count]));
  figure(registry, read, "gauge", "tributary_alarms", "Alarms tributary status shows (set-aside messages, stalled or lost relays).", [],
    (f) => [[{}, f.status.alarms.length]]);

  figure(registry, read, "gauge", "tributary_group_members", "The consumer group's members, alive or not.", ["group"],
    (f) => f.groups.map((g) => [{ group: g.group }, g.members.length]));
  figure(registry, read, "gauge", "tributary_group_alive_members", "The group's members with a heartbeat within their session timeout.", ["group"],
    (f) => f.groups.map((g) => [{ group: g.group }, g.members.filter((m) => m.alive).length]));
  const partitions = (f: Figures) => f.groups.flatMap((g) => g.partitions.map((p) => ({ g, p, labels: { group: g.group, stream: p.stream, partition: p.partition } })));
  const partitionLabels = ["group", "stream", "partition"] as const;
  figure(registry, read, "gauge", "tributary_group_committed_offset", "The next offset the group will handle on the partition (Kafka semantics); absent if it never committed.", partitionLabels,
    (f) => partitions(f).map(({ p, labels }) => [labels, p.committedOffset]));
  figure(registry, read, "gauge", "tributary_group_end_offset", "The partition's end: the offset its next event will get.", partitionLabels,
    (f) => partitions(f).map(({ p, labels }) => [labels, p.endOffset]));
  figure(registry, read, "gauge", "tributary_group_lag_events", "Events of the partition the group has not handled: end offset - committed offset.", partitionLabels,
    (f) => partitions(f).map(({ p, labels }) => [labels, p.lag]));
  figure(registry, read, "gauge", "tributary_group_behind_retention", "1 when retention dropped events of the partition the group had not handled.", partitionLabels,
    (f) => partitions(f).map(({ p, labels }) => [labels, p.behindRetention ? 1 : 0]));

  const queues = (f: Figures) => f.status.queues ?? [];
  figure(registry, read, "gauge", "tributary_queue_ready_messages", "Messages a claim may take now (the queue's depth).", ["queue"],
    (f) => queues(f).map((q) => [{ queue: q.queue }, q.ready]));
  figure(registry, read, "gauge", "tributary_queue_in_flight_messages", "Messages claimed and not yet acked, failed or timed out.", ["queue"],
    (f) => queues(f).map((q) => [{ queue: q.queue }, q.inFlight]));
  figure(registry, read, "gauge", "tributary_queue_delayed_messages", "Messages waiting for a delay, a run_at or a retry's backoff.", ["queue"],
    (f) => queues(f).map((q) => [{ queue: q.queue }, q.delayed]));
  figure(registry, read, "gauge", "tributary_queue_dead_messages", "Dead letters: messages past their max deliveries.", ["queue"],
    (f) => queues(f).map((q) => [{ queue: q.queue }, q.dead]));
  figure(registry, read, "gauge", "tributary_queue_oldest_ready_age_seconds", "Seconds since the oldest ready message was sent; absent when none is ready.", ["queue"],
    (f) => queues(f).map((q) => [{ queue: q.queue }, q.oldestReadyAgeSeconds]));
  figure(registry, read, "gauge", "tributary_queue_live_workers", "Workers of the queue with a heartbeat in the last 15 s.", ["queue"],
    (f) => queues(f).map((q) => [{ queue: q.queue }, q.workers]));
}
