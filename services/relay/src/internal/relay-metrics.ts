/**
 * The relay's metrics (docs/ARCHITECTURE.md "Metrics"), registered on a
 * prom-client registry the caller owns: counted as batches commit, and the
 * slot's figures read from the server when scraped (one query per scrape,
 * on the session's pool; none while no session runs). Labelled by slot, so
 * relays of several slots can share a registry.
 *
 * Names follow Prometheus' conventions: `_total` counters, seconds and bytes.
 * What each means is in the README ("Metrics").
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Sql } from "postgres";
import { oncePerScrape } from "@tributary/core";
import type { SlotAlarmKind } from "@tributary/client/internals";
import type { Batch } from "./relay-state.ts";

/** pg_replication_slots.wal_status's values: one series each, 1 for the slot's current one. */
const WAL_STATUSES = ["reserved", "extended", "unreserved", "lost"] as const;

export interface SlotFigures {
  lagBytes: number | null;
  lagSeconds: number | null;
  retainedBytes: number | null;
  walStatus: string | null;
  /** current_setting('max_slot_wal_keep_size'): '-1' is unlimited. */
  walKeepSize: string;
}

const relaysOf = new WeakMap<Registry, Set<RelayMetrics>>();

export class RelayMetrics {
  private readonly events: Counter<"slot">;
  private readonly transactions: Counter<"slot">;
  private readonly batches: Counter<"slot">;
  private readonly rejected: Counter<"slot">;
  private readonly writeSeconds: Histogram<"slot">;
  private readonly active: Gauge<"slot">;
  private readonly alarm: Gauge<"slot" | "alarm">;
  private sql: Sql | null = null;
  /** One read of the slot serves every gauge of a scrape. */
  private readonly figures = oncePerScrape(() => (this.sql === null ? Promise.resolve(null) : slotFigures(this.sql, this.slot).catch(() => null)));

  constructor(registry: Registry, private readonly slot: string) {
    const labelNames = ["slot"] as const;
    const registers = [registry];
    const metric = <M>(name: string, make: () => M): M => (registry.getSingleMetric(name) as M | undefined) ?? make();
    this.events = metric("tributary_relay_events_total", () => new Counter({ name: "tributary_relay_events_total", help: "Events the relay wrote into streams (committed).", labelNames, registers }));
    this.transactions = metric("tributary_relay_transactions_total", () => new Counter({ name: "tributary_relay_transactions_total", help: "Source transactions whose events the relay wrote (committed).", labelNames, registers }));
    this.batches = metric("tributary_relay_batches_total", () => new Counter({ name: "tributary_relay_batches_total", help: "Batches the relay committed (each one transaction with its checkpoint).", labelNames, registers }));
    this.rejected = metric("tributary_relay_rejected_messages_total", () => new Counter({ name: "tributary_relay_rejected_messages_total", help: "Committed messages the relay set aside in tributary.rejected_messages instead of streaming them.", labelNames, registers }));
    this.writeSeconds = metric("tributary_relay_batch_write_duration_seconds", () => new Histogram({
      name: "tributary_relay_batch_write_duration_seconds",
      help: "Time to write one batch of events and its checkpoint, from BEGIN to COMMIT.",
      labelNames,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }));
    this.active = metric("tributary_relay_active", () => new Gauge({ name: "tributary_relay_active", help: "1 while this relay is the slot's active relay, 0 while it waits as a standby or reconnects.", labelNames, registers }));
    this.active.set({ slot }, 0);
    this.alarm = metric("tributary_relay_slot_alarm", () => new Gauge({
      name: "tributary_relay_slot_alarm",
      help: "1 while the active relay's slot alarm is on (README Operations, Slot alarms): retained_wal, wal_status, wal_keep_unlimited.",
      labelNames: ["slot", "alarm"], registers,
    }));
    for (const c of [this.events, this.transactions, this.batches, this.rejected]) c.inc({ slot }, 0);
    // Every relay of a registry, each with its slot: the gauges read them all when scraped.
    const relays = relaysOf.get(registry) ?? new Set<RelayMetrics>();
    relaysOf.set(registry, relays);
    relays.add(this);
    const slotGauge = (name: string, help: string, value: (f: SlotFigures) => number | null) => {
      if (registry.getSingleMetric(name)) return;
      new Gauge({
        name, help, labelNames, registers,
        async collect() {
          this.reset();
          for (const relay of relays) {
            const f = await relay.readFigures();
            const v = f === null ? null : value(f);
            if (v !== null) this.set({ slot: relay.slot }, v);
          }
        },
      });
    };
    slotGauge("tributary_relay_lag_bytes", "WAL the relay has not yet acknowledged: pg_current_wal_lsn() - confirmed_flush_lsn of its slot.", (f) => f.lagBytes);
    slotGauge("tributary_relay_lag_seconds", "How long WAL takes to be relayed and acknowledged (the walsender's flush_lag; 0 once caught up).", (f) => f.lagSeconds);
    slotGauge("tributary_slot_retained_wal_bytes", "WAL the server keeps for the slot: pg_current_wal_lsn() - restart_lsn.", (f) => f.retainedBytes);
    if (!registry.getSingleMetric("tributary_slot_wal_status")) {
      new Gauge({
        name: "tributary_slot_wal_status",
        help: "The slot's wal_status (pg_replication_slots): 1 for its current status, 0 for the others; extended and unreserved mean max_wal_size or max_slot_wal_keep_size is being passed, lost that WAL was removed.",
        labelNames: ["slot", "status"],
        registers,
        async collect() {
          this.reset();
          for (const relay of relays) {
            const f = await relay.readFigures();
            if (f === null || f.walStatus === null) continue;
            for (const status of WAL_STATUSES) this.set({ slot: relay.slot, status }, f.walStatus === status ? 1 : 0);
          }
        },
      });
    }
  }

  /** A session's pool to read the slot's figures with, until the session ends. */
  attach(sql: Sql): void {
    this.sql = sql;
  }

  detach(sql: Sql): void {
    if (this.sql === sql) this.sql = null;
  }

  /** The slot alarms now on (slot-watch.ts); the others are 0. */
  alarms(on: readonly SlotAlarmKind[]): void {
    for (const alarm of ["retained_wal", "wal_status", "wal_keep_unlimited"] as const) this.alarm.set({ slot: this.slot, alarm }, on.includes(alarm) ? 1 : 0);
  }

  activeRelay(active: boolean): void {
    this.active.set({ slot: this.slot }, active ? 1 : 0);
  }

  /** A batch committed after `seconds` of writing. */
  batchWritten(batch: Batch, seconds: number): void {
    const labels = { slot: this.slot };
    this.events.inc(labels, batch.size);
    this.transactions.inc(labels, batch.transactions);
    this.rejected.inc(labels, batch.rejects.length);
    this.batches.inc(labels);
    this.writeSeconds.observe(labels, seconds);
  }

  /** The slot's figures for this scrape (null: no session, or the read failed). */
  readFigures(): Promise<SlotFigures | null> {
    return this.figures();
  }

}

/** The slot's lag and retained WAL, as `tributary status` defines them (apps/cli status-query.ts). */
export async function slotFigures(sql: Sql, slot: string): Promise<SlotFigures | null> {
  const [row] = await sql<{ lag: string | null; lag_seconds: number | null; retained: string | null; wal_status: string | null; keep: string }[]>`
    select (pg_current_wal_lsn() - r.confirmed_flush_lsn)::text as lag,
           case when r.confirmed_flush_lsn is null then null
                when pg_current_wal_lsn() <= r.confirmed_flush_lsn then 0
                -- Not streaming (reconnecting): no figure, rather than a 0 that reads as caught up.
                when r.active_pid is null then null
                else coalesce((select extract(epoch from s.flush_lag)::float8 from pg_stat_replication s where s.pid = r.active_pid), 0) end as lag_seconds,
           (pg_current_wal_lsn() - r.restart_lsn)::text as retained,
           r.wal_status, current_setting('max_slot_wal_keep_size') as keep
      from pg_replication_slots r where r.slot_name = ${slot}`;
  if (!row) return null;
  return {
    lagBytes: row.lag === null ? null : Math.max(0, Number(row.lag)),
    lagSeconds: row.lag_seconds,
    retainedBytes: row.retained === null ? null : Number(row.retained),
    walStatus: row.wal_status,
    walKeepSize: row.keep,
  };
}
