/**
 * bench:consumer (c): failover. Two members (own processes) share one stream
 * while a producer keeps appending at a low rate to every partition. Once the
 * group is steady (each member owns half the partitions, both handling), the
 * benchmark waits for the victim's next heartbeat and kills it with SIGKILL
 * right after it — the worst case: a whole session timeout must pass before
 * the survivor may declare it dead.
 *
 * Failover of a partition = from the kill until the survivor's handler sees
 * its first event of that partition (the survivor never owned it before, so
 * that event can only come after the takeover). Events kept arriving during
 * the whole session timeout, so each such partition has events waiting when
 * the survivor takes over: the figure is not padded by waiting for a new
 * event to arrive (the table shows how many were waiting). The survivor must
 * start exactly at the dead member's last committed offset (nothing
 * skipped), and it must reach the end of every partition after the
 * producer stops.
 */
import postgres, { type Sql } from "postgres";
import type { HandledEvent, MemberLauncher, MemberProcess } from "./consumer-process.ts";
import { benchEvent } from "./event-payload.ts";
import { appendTransaction } from "./lag-probe.ts";
import { fmt, progress } from "./report-table.ts";

export interface FailoverOptions {
  readonly url: string;
  readonly stream: string;
  readonly group: string;
  readonly partitions: number;
  readonly sessionTimeoutMs: number;
  readonly rate: number;
  readonly batchSize: number;
  readonly concurrency: number;
}

export interface PartitionFailover {
  readonly partition: number;
  readonly ms: number;
  readonly firstOffset: number;
  /** Events of the partition committed before the takeover and not yet committed by the dead member. */
  readonly waiting: number;
}

export interface FailoverResult {
  readonly partitions: readonly PartitionFailover[];
  readonly maxMs: number;
  /** ms from the victim's last heartbeat (server clock) to the kill. */
  readonly heartbeatToKillMs: number;
  /** ms from the kill until the benchmark saw the partitions reassigned (10 ms polling). */
  readonly reassignedMs: number;
  readonly produced: number;
  readonly redelivered: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`(c) timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** 1-event transactions at `rate`/s, keys cycling over every partition, until stopped. */
function startTrickle(url: string, stream: string, rate: number): { stop(): Promise<number> } {
  const sql = postgres(url, { max: 4, onnotice: () => {} });
  let stopped = false;
  let committed = 0;
  let failure: unknown = null;
  const loop = (async () => {
    const started = performance.now();
    let issued = 0;
    const inFlight = new Set<Promise<unknown>>();
    while (!stopped && failure === null) {
      const due = Math.floor(((performance.now() - started) / 1000) * rate);
      while (issued < due && inFlight.size < 16) {
        const append: Promise<unknown> = appendTransaction(sql, [benchEvent(2_000_000_000 + issued++, stream)]).then(
          () => {
            committed++;
            inFlight.delete(append);
          },
          (error: unknown) => (failure = error),
        );
        inFlight.add(append);
      }
      await sleep(5);
    }
    await Promise.all(inFlight);
  })();
  let stopping: Promise<number> | null = null;
  return {
    stop: () =>
      (stopping ??= (async () => {
        stopped = true;
        await loop;
        await sql.end({ timeout: 5 });
        if (failure !== null) throw failure;
        return committed;
      })()),
  };
}

interface Assignment {
  partition: number;
  member_id: string;
  releasing_member: string | null;
}

const assignments = (sql: Sql, group: string) =>
  sql<Assignment[]>`select partition, member_id, releasing_member from tributary.group_assignments where group_name = ${group} order by partition`;

async function heartbeatAt(sql: Sql, group: string, memberId: string): Promise<number | null> {
  const [row] = await sql<{ at: number }[]>`
    select extract(epoch from heartbeat_at)::float8 * 1000 as at from tributary.group_members
     where group_name = ${group} and member_id = ${memberId}`;
  return row?.at ?? null;
}

export async function measureFailover(launcher: MemberLauncher, sql: Sql, options: FailoverOptions): Promise<FailoverResult> {
  progress(`(c) failover: 2 members on ${options.stream} (${options.partitions} partitions), session timeout ${options.sessionTimeoutMs} ms, ${options.rate} events/s`);
  const handledBy = new Map<string, HandledEvent[]>();
  const start = (label: string): MemberProcess => {
    const events: HandledEvent[] = [];
    handledBy.set(label, events);
    return launcher.start({
      databaseUrl: options.url,
      group: options.group,
      streams: [options.stream],
      mode: "report",
      batchSize: options.batchSize,
      concurrency: options.concurrency,
      sessionTimeoutMs: options.sessionTimeoutMs,
      applicationName: `bench-consumer-${label}`,
      onEvents: (batch) => events.push(...batch),
    });
  };
  const trickle = startTrickle(options.url, options.stream, options.rate);
  const victim = start("victim");
  const survivor = start("survivor");
  try {
    const victimId = (await victim.joined).memberId;
    const survivorId = (await survivor.joined).memberId;

    // Steady: half the partitions each, no hand-off pending, both handling since.
    await waitFor("an even, settled assignment", async () => {
      const rows = await assignments(sql, options.group);
      const victims = rows.filter((r) => r.member_id === victimId).length;
      return rows.length === options.partitions && rows.every((r) => r.releasing_member === null) &&
        Math.abs(2 * victims - options.partitions) <= 1;
    }, 60_000);
    const settledAt = Date.now();
    await waitFor("both members handling after the rebalance", () =>
      [...handledBy.values()].every((events) => events.some((e) => e.handledMs > settledAt)), 30_000);
    const deadPartitions = (await assignments(sql, options.group)).filter((r) => r.member_id === victimId).map((r) => r.partition);

    // Kill right after the victim's next heartbeat: a full session timeout before it can expire.
    const previous = await heartbeatAt(sql, options.group, victimId);
    await waitFor("the victim's next heartbeat", async () => (await heartbeatAt(sql, options.group, victimId)) !== previous, options.sessionTimeoutMs, 2);
    const killAt = Date.now();
    await victim.kill();
    const lastHeartbeat = (await heartbeatAt(sql, options.group, victimId))!;
    progress(`(c) killed the victim ${Math.round(killAt - lastHeartbeat)} ms after its heartbeat; it owned partitions ${deadPartitions.join(", ")}`);

    // Its last commits: once its backends are gone, nothing can move them until the survivor owns the partitions.
    await waitFor("the victim's backends to go", async () =>
      (await sql`select 1 from pg_stat_activity where application_name = 'bench-consumer-victim'`).length === 0, 10_000);
    const committed = new Map(
      (await sql<{ partition: number; next_offset: string }[]>`
        select partition, next_offset::text from tributary.group_offsets
         where group_name = ${options.group} and stream = ${options.stream} and partition = any (${deadPartitions}::int[])`)
        .map((r) => [r.partition, Number(r.next_offset)]),
    );

    let reassignedAt = 0;
    await waitFor("the survivor to own the victim's partitions", async () => {
      const rows = await assignments(sql, options.group);
      return deadPartitions.every((p) => rows.find((r) => r.partition === p)?.member_id === survivorId);
    }, options.sessionTimeoutMs + 30_000, 10);
    reassignedAt = Date.now();

    const survivorEvents = handledBy.get("survivor")!;
    const firstIn = (p: number) => survivorEvents.find((e) => e.partition === p && e.handledMs >= killAt);
    await waitFor("the survivor to handle an event in each of the victim's partitions", () => deadPartitions.every((p) => firstIn(p) !== undefined), 30_000);
    const partitions = deadPartitions.map((p) => {
      const first = firstIn(p)!;
      const from = committed.get(p) ?? 0;
      if (first.offset !== from) throw new Error(`(c) partition ${p}: the survivor started at offset ${first.offset}, the dead member had committed up to ${from}`);
      const waiting = survivorEvents.filter((e) => e.partition === p && e.offset >= from && e.committedMs < reassignedAt).length;
      return { partition: p, ms: first.handledMs - killAt, firstOffset: first.offset, waiting };
    });

    // Completeness: after the producer stops, the survivor handles every partition to its end.
    const produced = await trickle.stop();
    await waitFor("the survivor to commit every partition's end", async () => {
      const [row] = await sql<{ behind: number }[]>`
        select count(*)::int as behind from tributary.partition_offsets e
          left join tributary.group_offsets o on o.group_name = ${options.group} and o.stream = e.stream and o.partition = e.partition
         where e.stream = ${options.stream} and coalesce(o.next_offset, 0) < e.next_offset`;
      return row!.behind === 0;
    }, 30_000);
    const victimEvents = handledBy.get("victim")!;
    const redelivered = partitions.reduce((n, p) => n + victimEvents.filter((e) => e.partition === p.partition && e.offset >= p.firstOffset).length, 0);
    const exit = await survivor.stop();
    if (exit !== 0) throw new Error(`(c) survivor exited with ${exit}: ${survivor.stderr()}`);
    const maxMs = Math.max(...partitions.map((p) => p.ms));
    progress(`(c) failover ${fmt.int(maxMs)} ms (partitions ${partitions.map((p) => `${p.partition}: ${p.ms} ms`).join(", ")})`);
    return { partitions, maxMs, heartbeatToKillMs: Math.round(killAt - lastHeartbeat), reassignedMs: reassignedAt - killAt, produced, redelivered };
  } finally {
    await Promise.allSettled([victim.kill(), survivor.kill(), trickle.stop().catch(() => 0)]);
  }
}
