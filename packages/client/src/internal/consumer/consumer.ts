/**
 * A consumer group member: joins the group, handles the events of the
 * partitions it owns in offset order, commits after each handled batch, and
 * follows rebalances (docs/ARCHITECTURE.md invariants 8 and 9).
 *
 *   heartbeat ─► owned partitions (stream, partition, generation, ready)
 *     new + ready   → start at the committed offset (or `startFrom`)
 *     lost          → stop fetching; once its batch in flight is committed,
 *                     release it so the new owner starts
 *   fetch round   ─► one query reads every idle partition from its position
 *                    (a LATERAL index range scan each); non-empty batches go
 *                    to the handler, at most `concurrency` partitions at once
 *
 * Wake-ups: the relay NOTIFYs tributary_events after each batch it writes, so
 * a caught-up member fetches within milliseconds; a slow poll
 * (`pollIntervalMs`) covers a missed notification. Rebalances NOTIFY
 * tributary_groups, so members heartbeat at once. Heartbeats also run every
 * `heartbeatIntervalMs`, and exactly when another member could expire.
 *
 * A member that cannot heartbeat for a whole session timeout stops handling
 * (its partitions may have moved) until a heartbeat tells it what it owns.
 * Crash-only: after a crash, partitions resume from their committed offsets.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { Duration, Schedule } from "effect";
import type { Sql } from "postgres";
import type { Registry } from "prom-client";
import { EVENTS_CHANNEL, GROUPS_CHANNEL } from "@tributary/core";
import type { RawStreamEvent, StreamEvent } from "../events.ts";
import { resolveStart, type StartPosition } from "../reader.ts";
import { TributaryGroupError } from "../errors.ts";
import { describeMissed, missedBelowWatermark, type MissedEvents, type OutOfRangePolicy } from "../low-watermarks.ts";
import { ConsumerMetrics } from "./consumer-metrics.ts";
import { handleBatch, type AnyEvent, type BatchHandling, type EventBatchHandler, type EventHandler, type FailurePolicy, type RawEventBatchHandler } from "./batch-handler.ts";
import { fetchPartitions, fetchRawPartitions } from "./fetch.ts";
import { heartbeat, leave, release, type HeartbeatResult } from "./membership.ts";
import { commitOffsets, committedOffsets } from "./offsets.ts";
import { partitionKey } from "./assignor.ts";
import { isPermanentDatabaseError } from "../connection-errors.ts";
import { checkGroupName } from "../group-admin.ts";

export interface ConsumerOptions {
  readonly group: string;
  readonly streams: readonly string[];
  /** Called once per event, in offset order per partition. Give this or `batchHandler`. */
  readonly handler?: EventHandler;
  /** Called with each fetched batch of one partition, in offset order. */
  readonly batchHandler?: EventBatchHandler;
  /**
   * Like batchHandler, with the events as PostgreSQL sent them (RawStreamEvent:
   * each column's bytes, nothing decoded). For forwarding them elsewhere (the
   * Kafka bridge); a dead-lettered event is decoded first.
   */
  readonly rawBatchHandler?: RawEventBatchHandler;
  /** The handler gets a transaction (context.tx); its writes and the offset commit commit together. */
  readonly transactional?: boolean;
  /** Events per partition per fetch (default 500). */
  readonly batchSize?: number;
  /** Partitions handled at the same time (default 8). Order within a partition is always kept. */
  readonly concurrency?: number;
  /**
   * Fetch a partition's next batch while the handler works on a full one
   * (default false): the read overlaps the handling and the offset commit,
   * at the cost of up to `concurrency` more batches in memory. Order and
   * commits are unchanged — a prefetched batch is handled only from the
   * position the partition reached, and dropped on a seek, a failure, a
   * pause or a revocation. The Kafka bridge turns it on.
   */
  readonly prefetch?: boolean;
  /** A member silent this long loses its partitions (default 10,000 ms). */
  readonly sessionTimeoutMs?: number;
  /** Default: a third of the session timeout, at most 3,000 ms. */
  readonly heartbeatIntervalMs?: number;
  /** Fallback poll when no notification arrives (default 2,000 ms). */
  readonly pollIntervalMs?: number;
  /** How long a member that lost a partition may take to release it (default: the session timeout). */
  readonly releaseTimeoutMs?: number;
  /** Where a partition without a committed offset starts (default "earliest": its first retained event). */
  readonly startFrom?: "earliest" | "latest" | Date;
  /**
   * A partition whose position is below its low watermark (retention dropped
   * events the group had not handled): "resume" (default) goes on from the
   * watermark, logs and tells `onMissed` how many were missed; "fail" stops
   * the member with OFFSET_OUT_OF_RANGE (`done` rejects).
   */
  readonly onOutOfRange?: OutOfRangePolicy;
  /** Told what a partition missed before its next event is handled ("resume"). */
  readonly onMissed?: (missed: MissedEvents) => void;
  /** Retries of a failing handler (default: exponential from 100 ms, capped at 5 s). */
  readonly retry?: Schedule.Schedule<unknown, unknown>;
  /** How many retries before `onFailure` applies (default 5). */
  readonly retries?: number;
  /** "pause" (default: the partition stops at the failing event, order kept) or "dead-letter". */
  readonly onFailure?: FailurePolicy;
  /** The dead-letter stream of a stream (default `${stream}.dead-letter`). */
  readonly deadLetterStream?: (stream: string) => string;
  readonly memberId?: string;
  /** Shown by `tributary groups` (default host:pid). */
  readonly client?: string;
  readonly log?: (message: string) => void;
  /** A prom-client registry to register the member's metrics on (consumer-metrics.ts; README "Metrics"). None by default. */
  readonly metrics?: Registry;
}

export interface PartitionStatus {
  readonly stream: string;
  readonly partition: number;
  readonly generation: number;
  /** The next offset this member will handle (null until loaded). */
  readonly position: number | null;
  readonly paused: boolean;
  readonly ready: boolean;
}

export interface Consumer {
  readonly memberId: string;
  /** Resolves when the member has left the group after stop(); rejects on a fatal error. */
  readonly done: Promise<void>;
  assignments(): PartitionStatus[];
  /** Moves this member's position in its partitions of `stream` (all, or one) and commits it. */
  seek(stream: string, to: StartPosition, partition?: number): Promise<void>;
  /** Resumes a partition paused by a failing handler (from the failing event). */
  resume(stream: string, partition: number): void;
  /** Finishes the batches in flight, commits, leaves the group. */
  stop(): Promise<void>;
}

interface PartitionState {
  readonly stream: string;
  readonly partition: number;
  readonly generation: number;
  ready: boolean;
  position: number | null;
  busy: Promise<void> | null;
  paused: boolean;
  /**
   * The wake-up epoch at which a fetch found nothing more (-1: not caught up).
   * A notification bumps the epoch, so a fetch that raced with it cannot
   * mark the partition caught up past the notification (no lost wake-up).
   */
  caughtUpAt: number;
  revoked: boolean;
  /** When a batch of it last started (a sequence number): the longest-waiting partitions are fetched first. */
  startedSeq: number;
  /** The next batch, read while the current one is handled (ConsumerOptions.prefetch). */
  prefetched: Prefetch | null;
}

interface Prefetch {
  /** The offset it was read from: usable only if the partition's position is still there. */
  readonly from: number;
  /** The wake-up epoch when the read began (caughtUpAt's rule applies to it, not to when it is used). */
  readonly epoch: number;
  /** Its events; null if the read failed (then the partition is fetched again). */
  readonly events: Promise<AnyEvent[] | null>;
}

class GroupMember implements Consumer {
  readonly memberId: string;
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private rejectDone!: (error: unknown) => void;
  private readonly partitions = new Map<string, PartitionState>();
  private readonly abort = new AbortController();
  private stopping = false;
  private fetching = false;
  private epoch = 0;
  private startSeq = 0;
  private fetchAgain = false;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private heartbeatRunning: Promise<void> | null = null;
  private heartbeatAgain = false;
  private lastHeartbeatOk = Date.now();
  private listeners: Array<{ unlisten(): Promise<void> }> = [];
  private readonly handling: BatchHandling;
  private readonly metrics: ConsumerMetrics | null;
  private readonly opts: Required<Pick<ConsumerOptions, "batchSize" | "concurrency" | "sessionTimeoutMs" | "heartbeatIntervalMs" | "pollIntervalMs" | "releaseTimeoutMs">>;
  private readonly log: (message: string) => void;

  constructor(private readonly sql: Sql, private readonly options: ConsumerOptions) {
    if ([options.handler, options.batchHandler, options.rawBatchHandler].filter(Boolean).length !== 1) {
      throw new TypeError("consumer: give exactly one of handler, batchHandler or rawBatchHandler");
    }
    if (options.streams.length === 0) throw new TypeError("consumer: streams must name at least one stream");
    checkGroupName(options.group);
    this.memberId = options.memberId ?? `${options.group}-${randomUUID()}`;
    this.log = options.log ?? ((m) => console.error(`[tributary consumer ${options.group}] ${m}`));
    const sessionTimeoutMs = options.sessionTimeoutMs ?? 10_000;
    this.opts = {
      batchSize: options.batchSize ?? 500,
      concurrency: options.concurrency ?? 8,
      sessionTimeoutMs,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? Math.min(3_000, Math.floor(sessionTimeoutMs / 3)),
      pollIntervalMs: options.pollIntervalMs ?? 2_000,
      releaseTimeoutMs: options.releaseTimeoutMs ?? sessionTimeoutMs,
    };
    this.metrics = options.metrics ? new ConsumerMetrics(options.metrics, options.group, sql, () => this.assignments()) : null;
    this.handling = {
      sql,
      group: options.group,
      memberId: this.memberId,
      handler: options.handler ? { each: options.handler } : options.batchHandler ? { batch: options.batchHandler } : { raw: options.rawBatchHandler! },
      transactional: options.transactional ?? false,
      retry: options.retry ?? Schedule.min([Schedule.exponential(Duration.millis(100), 2), Schedule.spaced(Duration.seconds(5))]),
      retries: options.retries ?? 5,
      onFailure: options.onFailure ?? "pause",
      deadLetterStream: options.deadLetterStream ?? ((stream) => `${stream}.dead-letter`),
      log: this.log,
      signal: this.abort.signal,
      metrics: this.metrics,
    };
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => undefined);
  }

  async start(): Promise<void> {
    // onlisten runs again when postgres.js re-listens on a new connection:
    // events that arrived meanwhile notified no one, so that is a wake-up too.
    this.listeners.push(await this.sql.listen(EVENTS_CHANNEL, () => this.wake(), () => this.wake()));
    this.listeners.push(await this.sql.listen(GROUPS_CHANNEL, (group) => {
      if (group === this.options.group) this.requestHeartbeat();
    }));
    await this.heartbeatNow();
    this.pollTimer = setInterval(() => this.wake(), this.opts.pollIntervalMs);
  }

  assignments(): PartitionStatus[] {
    return [...this.partitions.values()].filter((p) => !p.revoked).map((p) => ({
      stream: p.stream, partition: p.partition, generation: p.generation, position: p.position, paused: p.paused, ready: p.ready,
    }));
  }

  async seek(stream: string, to: StartPosition, partition?: number): Promise<void> {
    const targets = [...this.partitions.values()].filter((p) => !p.revoked && p.ready && p.stream === stream && (partition === undefined || p.partition === partition));
    for (const p of targets) {
      while (p.busy) await p.busy;
      const offset = await resolveStart(this.sql, p.stream, p.partition, to);
      await commitOffsets(this.sql, this.options.group, this.memberId, [{ stream: p.stream, partition: p.partition, generation: p.generation, nextOffset: offset }]);
      p.position = offset;
      p.caughtUpAt = -1;
    }
    this.scheduleFetch();
  }

  resume(stream: string, partition: number): void {
    const p = this.partitions.get(partitionKey(stream, partition));
    if (p?.paused) {
      p.paused = false;
      p.caughtUpAt = -1;
      this.scheduleFetch();
    }
  }

  async stop(): Promise<void> {
    if (this.stopping) return this.done;
    this.stopping = true;
    this.metrics?.close();
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    // Batches in flight finish and commit (their retries are cut short).
    const inFlight = [...this.partitions.values()].map((p) => p.busy).filter((b): b is Promise<void> => b !== null);
    const finished = Promise.allSettled(inFlight);
    setTimeout(() => this.abort.abort(), 1_000).unref();
    await finished;
    this.abort.abort();
    await this.heartbeatRunning?.catch(() => undefined);
    await Promise.allSettled(this.listeners.map((l) => l.unlisten()));
    try {
      await leave(this.sql, { group: this.options.group, memberId: this.memberId }, this.opts.releaseTimeoutMs);
      this.resolveDone();
    } catch (error) {
      this.rejectDone(error);
    }
    return this.done;
  }

  private wake(): void {
    this.epoch++;
    this.scheduleFetch();
  }

  // ── membership ────────────────────────────────────────────────────────────

  private requestHeartbeat(): void {
    if (this.stopping) return;
    if (this.heartbeatRunning) {
      this.heartbeatAgain = true;
      return;
    }
    void this.heartbeatNow().catch(() => undefined);
  }

  private heartbeatNow(): Promise<void> {
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    const run = (async () => {
      do {
        this.heartbeatAgain = false;
        let next = this.opts.heartbeatIntervalMs;
        try {
          const result = await heartbeat(this.sql, {
            group: this.options.group,
            memberId: this.memberId,
            streams: this.options.streams,
            sessionTimeoutMs: this.opts.sessionTimeoutMs,
            releaseTimeoutMs: this.opts.releaseTimeoutMs,
            client: this.options.client ?? `${hostname()}:${process.pid}`,
          });
          this.lastHeartbeatOk = Date.now();
          if (!this.stopping) this.apply(result);
          if (result.nextCheckMs !== null) next = Math.min(next, Math.max(10, Math.ceil(result.nextCheckMs) + 20));
        } catch (error) {
          if (this.stopping) return;
          if (this.isFatal(error)) {
            this.log(`heartbeat failed (${describe(error)}); not retrying: this will not fix itself`);
            this.suspend();
            throw error;
          }
          this.log(`heartbeat failed (${describe(error)}); retrying`);
          if (Date.now() - this.lastHeartbeatOk > this.opts.sessionTimeoutMs) this.suspend();
          next = Math.min(next, 500);
        }
        if (!this.stopping && !this.heartbeatAgain) {
          this.heartbeatTimer = setTimeout(() => this.requestHeartbeat(), next);
        }
      } while (this.heartbeatAgain && !this.stopping);
    })();
    this.heartbeatRunning = run.finally(() => {
      this.heartbeatRunning = null;
    });
    return this.heartbeatRunning.catch((error: unknown) => {
      this.rejectDone(error);
      void this.stop().catch(() => undefined); // no timers or fetches left behind a fatal error
      throw error;
    });
  }

  private isFatal(error: unknown): boolean {
    // Bad input (an invalid stream name), wrong credentials, a missing database,
    // table or privilege will not fix themselves: fail `done` instead of retrying for ever.
    return isPermanentDatabaseError(error);
  }

  /** Lost contact for a whole session: our partitions may have moved. Stop until a heartbeat says otherwise. */
  private suspend(): void {
    for (const p of this.partitions.values()) this.revoke(p, false);
  }

  private apply(result: HeartbeatResult): void {
    const owned = new Map(result.owned.map((o) => [partitionKey(o.stream, o.partition), o]));
    for (const [key, p] of this.partitions) {
      const now = owned.get(key);
      if (!now || now.generation !== p.generation) this.revoke(p, true);
    }
    // Partitions we lost while not holding them in memory (e.g. after a restart mid-hand-off).
    const releasable = result.releasing.filter((r) => !this.partitions.has(partitionKey(r.stream, r.partition)));
    if (releasable.length > 0) void release(this.sql, { group: this.options.group, memberId: this.memberId }, releasable).catch(() => undefined);
    const starting: PartitionState[] = [];
    for (const [key, o] of owned) {
      const existing = this.partitions.get(key);
      if (existing && existing.generation === o.generation && !existing.revoked) {
        if (o.ready && !existing.ready) {
          existing.ready = true;
          starting.push(existing);
        }
        continue;
      }
      if (existing) continue; // still finishing under its old generation; picked up by the next heartbeat
      const state: PartitionState = {
        stream: o.stream, partition: o.partition, generation: o.generation, ready: o.ready,
        position: null, busy: null, paused: false, caughtUpAt: -1, revoked: false, startedSeq: 0, prefetched: null,
      };
      this.partitions.set(key, state);
      if (o.ready) starting.push(state);
    }
    if (starting.length > 0) void this.load(starting);
  }

  /** Stops a partition; once its batch in flight is done, releases it (if `release`) and forgets it. */
  private revoke(p: PartitionState, releaseIt: boolean): void {
    if (p.revoked) return;
    p.revoked = true;
    const key = partitionKey(p.stream, p.partition);
    void (async () => {
      await p.busy?.catch(() => undefined);
      if (this.partitions.get(key) === p) this.partitions.delete(key);
      if (releaseIt && p.ready) {
        await release(this.sql, { group: this.options.group, memberId: this.memberId }, [p]).catch(() => undefined);
      }
      this.requestHeartbeat();
    })();
  }

  private async load(states: PartitionState[]): Promise<void> {
    try {
      const committed = await committedOffsets(this.sql, this.options.group, states);
      for (const p of states) {
        const offset = committed.get(partitionKey(p.stream, p.partition)) ??
          (await resolveStart(this.sql, p.stream, p.partition, this.options.startFrom ?? "earliest"));
        p.position = offset;
        p.caughtUpAt = -1;
      }
      this.scheduleFetch();
    } catch (error) {
      this.log(`could not load committed offsets (${describe(error)}); retrying`);
      setTimeout(() => void this.load(states.filter((p) => !p.revoked)), 500).unref();
    }
  }

  // ── fetching and handling ─────────────────────────────────────────────────

  private scheduleFetch(): void {
    if (this.stopping) return;
    if (this.fetching) {
      this.fetchAgain = true;
      return;
    }
    this.fetching = true;
    void this.fetchRounds().finally(() => {
      this.fetching = false;
    });
  }

  private async fetchRounds(): Promise<void> {
    do {
      this.fetchAgain = false;
      if (this.stopping) return;
      const busy = [...this.partitions.values()].filter((p) => p.busy !== null).length;
      const room = this.opts.concurrency - busy;
      if (room <= 0) continue;
      // Fetch only what can start now, the longest-waiting partitions first:
      // fetching every idle partition but starting `room` of them parsed
      // 4 rows per event handled and starved the partitions late in the map
      // (bench:consumer).
      const idle = [...this.partitions.values()]
        .filter((p) => p.ready && !p.revoked && !p.paused && p.busy === null && p.position !== null && p.caughtUpAt !== this.epoch)
        .sort((a, b) => a.startedSeq - b.startedSeq)
        .slice(0, room);
      if (idle.length === 0) continue;
      const epoch = this.epoch;
      // A batch read ahead from where the partition is now is used as it is;
      // one from elsewhere (a seek, a failed batch) is dropped.
      const ahead = new Map<PartitionState, Prefetch>();
      for (const p of idle) {
        if (p.prefetched && p.prefetched.from === p.position) ahead.set(p, p.prefetched);
        p.prefetched = null;
      }
      const positions = idle.filter((p) => !ahead.has(p)).map((p) => ({ stream: p.stream, partition: p.partition, from: p.position! }));
      let batches: Map<string, AnyEvent[]>;
      try {
        batches = positions.length > 0 ? await this.fetch(positions) : new Map();
      } catch (error) {
        this.log(`fetch failed (${describe(error)}); retrying at the next poll`);
        return;
      }
      let caughtUp = 0;
      for (const p of idle) {
        const read = ahead.get(p);
        let events: AnyEvent[];
        let from: number;
        let readAt = epoch;
        if (read) {
          const got = await read.events;
          // A read ahead that failed or found nothing yet: fetch the partition afresh.
          if (got === null || got.length === 0) {
            this.fetchAgain = true;
            continue;
          }
          events = got;
          from = read.from;
          readAt = read.epoch;
        } else {
          events = batches.get(partitionKey(p.stream, p.partition)) ?? [];
          from = positions.find((f) => f.stream === p.stream && f.partition === p.partition)!.from;
        }
        if (events.length === 0 || p.revoked || p.busy) {
          if (events.length === 0) {
            p.caughtUpAt = readAt;
            caughtUp++;
          }
          continue;
        }
        // A position moved by seek() while fetching makes this batch stale.
        if (p.position !== from) continue;
        if (events[0]!.offset !== from && !(await this.outOfRange(p, from, events[0]!.offset))) return;
        p.startedSeq = ++this.startSeq;
        p.caughtUpAt = events.length < this.opts.batchSize ? readAt : -1;
        p.busy = this.handle(p, events).finally(() => {
          p.busy = null;
          this.scheduleFetch();
        });
        // A full batch: more is likely behind it; read it while this one is handled.
        if (this.options.prefetch && events.length === this.opts.batchSize) this.readAhead(p, events.at(-1)!.offset + 1);
      }
      // Partitions that had nothing left room: give it to the others.
      if (caughtUp > 0) this.fetchAgain = true;
    } while (this.fetchAgain);
  }

  private fetch(positions: Array<{ stream: string; partition: number; from: number }>): Promise<Map<string, AnyEvent[]>> {
    return this.options.rawBatchHandler
      ? fetchRawPartitions(this.sql, positions, this.opts.batchSize)
      : fetchPartitions(this.sql, positions, this.opts.batchSize);
  }

  private readAhead(p: PartitionState, from: number): void {
    const events = this.fetch([{ stream: p.stream, partition: p.partition, from }]).then(
      (batches) => batches.get(partitionKey(p.stream, p.partition)) ?? [],
      () => null, // the fetch in fetchRounds reads it again and reports what fails
    );
    p.prefetched = { from, epoch: this.epoch, events };
  }

  /**
   * A fetch from `from` began at `first`: offsets are dense above the low
   * watermark, so retention dropped what lay between. "resume": the position
   * moves to the watermark, reported; "fail": the member stops. False when it stopped.
   */
  private async outOfRange(p: PartitionState, from: number, first: number): Promise<boolean> {
    if (!(await missedBelowWatermark(this.sql, p.stream, p.partition, from))) {
      this.log(`${p.stream}/${p.partition}: a read from offset ${from} began at ${first}, above the low watermark (offsets must be dense); refetching`);
      return false;
    }
    const missed: MissedEvents = { stream: p.stream, partition: p.partition, position: from, lowWatermark: first, missed: first - from };
    if ((this.options.onOutOfRange ?? "resume") === "fail") {
      this.rejectDone(new TributaryGroupError(
        "OFFSET_OUT_OF_RANGE",
        `group '${this.options.group}': ${describeMissed(missed)}. Reset the group (resetGroup, or tributary groups reset) or ` +
          `start the member with onOutOfRange: "resume" to go on from the watermark`,
      ));
      void this.stop().catch(() => undefined);
      return false;
    }
    this.log(`${describeMissed(missed)}; going on from ${first}`);
    this.options.onMissed?.(missed);
    p.position = first;
    return true;
  }

  private async handle(p: PartitionState, events: AnyEvent[]): Promise<void> {
    try {
      const startedAt = this.metrics ? performance.now() : 0;
      const outcome = await handleBatch(this.handling, p, events);
      this.metrics?.handled(p.stream, p.partition, outcome.nextOffset - events[0]!.offset, (performance.now() - startedAt) / 1000);
      p.position = outcome.nextOffset;
      if (outcome.kind === "paused") p.paused = true;
    } catch (error) {
      if ((error as { code?: string })?.code === "STALE_GENERATION") {
        this.log(describe(error));
        this.revoke(p, false);
        return;
      }
      if (this.abort.signal.aborted) return;
      // Commit or database failure: nothing after the last commit is lost;
      // refetch from the last committed offset.
      this.log(`batch of ${p.stream}/${p.partition} failed (${describe(error)}); refetching from the last commit`);
      const committed = await committedOffsets(this.sql, this.options.group, [p]).catch(() => null);
      if (committed) p.position = committed.get(partitionKey(p.stream, p.partition)) ?? p.position;
      p.caughtUpAt = this.epoch; // wait for the next poll or notification
    }
  }
}

/** Joins `options.group` and starts handling; resolves once the member's first heartbeat is in. */
export async function consumer(sql: Sql, options: ConsumerOptions): Promise<Consumer> {
  const member = new GroupMember(sql, options);
  try {
    await member.start();
  } catch (error) {
    await member.stop().catch(() => undefined);
    throw error;
  }
  return member;
}

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error));
