/**
 * A consumer group member's metrics (docs/ARCHITECTURE.md "Metrics"), on a
 * prom-client registry the caller passes as `ConsumerOptions.metrics`:
 * events handled and batch durations counted as batches commit, failures as
 * the handler gives up on an event; per assigned partition the committed
 * offset, the partition's end and the lag, read when scraped (one query of
 * tributary.partition_offsets for all the registry's members).
 */
import type { Sql } from "postgres";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { oncePerScrape } from "@tributary/core";

export interface AssignedPartition {
  readonly stream: string;
  readonly partition: number;
  /** The next offset the member handles (what it committed); null until loaded. */
  readonly position: number | null;
}

interface Member {
  readonly group: string;
  readonly sql: Sql;
  readonly assignments: () => readonly AssignedPartition[];
}

const membersOf = new WeakMap<Registry, Set<Member>>();

export class ConsumerMetrics {
  private readonly events: Counter<"group" | "stream" | "partition">;
  private readonly failures: Counter<"group" | "stream" | "outcome">;
  private readonly batchSeconds: Histogram<"group" | "stream">;
  private readonly member: Member;
  private readonly members: Set<Member>;

  constructor(registry: Registry, group: string, sql: Sql, assignments: () => readonly AssignedPartition[]) {
    const registers = [registry];
    const metric = <M>(name: string, make: () => M): M => (registry.getSingleMetric(name) as M | undefined) ?? make();
    this.events = metric("tributary_consumer_events_total", () => new Counter({
      name: "tributary_consumer_events_total", help: "Events the member handled and committed past (dead-lettered ones included).",
      labelNames: ["group", "stream", "partition"], registers,
    }));
    this.failures = metric("tributary_consumer_handler_failures_total", () => new Counter({
      name: "tributary_consumer_handler_failures_total",
      help: "Events the handler failed on after its retries: outcome paused (the partition stops there) or dead_letter (moved to the dead-letter stream).",
      labelNames: ["group", "stream", "outcome"], registers,
    }));
    this.batchSeconds = metric("tributary_consumer_batch_duration_seconds", () => new Histogram({
      name: "tributary_consumer_batch_duration_seconds", help: "Time to handle one fetched batch of a partition and commit past it, retries included.",
      labelNames: ["group", "stream"], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers,
    }));
    this.member = { group, sql, assignments };
    this.members = membersOf.get(registry) ?? new Set<Member>();
    membersOf.set(registry, this.members);
    this.members.add(this.member);
    if (registry.getSingleMetric("tributary_consumer_lag_events")) return;
    const members = this.members;
    const labelNames = ["group", "stream", "partition"] as const;
    // One read of the partitions' ends serves the three gauges of a scrape.
    const read = oncePerScrape(() => partitionFigures([...members]));
    const gauge = (name: string, help: string, value: (f: PartitionFigures) => number | null) => new Gauge({
      name, help, labelNames, registers,
      async collect() {
        this.reset();
        for (const f of await read()) {
          const v = value(f);
          if (v !== null) this.set({ group: f.group, stream: f.stream, partition: f.partition }, v);
        }
      },
    });
    gauge("tributary_consumer_committed_offset", "The next offset the member will handle on the partition (what it committed, Kafka semantics).", (f) => f.position);
    gauge("tributary_consumer_end_offset", "The partition's end: the offset its next event will get.", (f) => f.end);
    gauge("tributary_consumer_lag_events", "Events of the partition the member has not handled yet: end offset - committed offset.", (f) => (f.position === null || f.end === null ? null : Math.max(0, f.end - f.position)));
    new Gauge({
      name: "tributary_consumer_assigned_partitions", help: "Partitions assigned to the process's members of the group.", labelNames: ["group"], registers,
      collect() {
        this.reset();
        for (const m of members) this.inc({ group: m.group }, m.assignments().length);
      },
    });
  }

  /** The member left: its partitions are no longer reported. */
  close(): void {
    this.members.delete(this.member);
  }

  /** `count` events of a batch handled and committed past in `seconds`. */
  handled(stream: string, partition: number, count: number, seconds: number): void {
    const group = this.member.group;
    this.events.inc({ group, stream, partition }, count);
    this.batchSeconds.observe({ group, stream }, seconds);
  }

  failed(stream: string, outcome: "paused" | "dead_letter"): void {
    this.failures.inc({ group: this.member.group, stream, outcome });
  }
}

interface PartitionFigures {
  group: string;
  stream: string;
  partition: number;
  position: number | null;
  end: number | null;
}

async function partitionFigures(members: readonly Member[]): Promise<PartitionFigures[]> {
  const figures: PartitionFigures[] = [];
  for (const m of members) {
    const assigned = m.assignments();
    if (assigned.length === 0) continue;
    // A failed read reports no ends (and no lag) rather than wrong ones.
    const ends = await m.sql<{ stream: string; partition: number; next_offset: string }[]>`
      select o.stream, o.partition, o.next_offset::text from tributary.partition_offsets o
        join unnest(${assigned.map((a) => a.stream)}::text[], ${assigned.map((a) => a.partition)}::int[]) as a(stream, partition)
          on o.stream = a.stream and o.partition = a.partition`.catch(() => null);
    const endOf = new Map((ends ?? []).map((e) => [`${e.partition}\u0000${e.stream}`, Number(e.next_offset)]));
    for (const a of assigned) {
      // A partition nothing was ever relayed to has no row yet: its end is 0.
      const end = ends === null ? null : endOf.get(`${a.partition}\u0000${a.stream}`) ?? 0;
      figures.push({ group: m.group, stream: a.stream, partition: a.partition, position: a.position, end });
    }
  }
  return figures;
}
