/**
 * Moves WalMessages from the replication source into the stream table.
 *
 * Backpressure: messages are accepted into the current batch, which is
 * written at the next transaction boundary whenever no write is in flight,
 * or as soon as it is full. At most one write is in flight; when a second
 * batch is full before the first is written, the pump pauses the socket and
 * holds the messages that were already read (at most one socket read) until
 * the write ends. Memory is therefore at most two batches and one socket
 * read, whatever the transaction or backlog size (invariant 6).
 *
 * Turns (the event loop): a write is a chain of round trips on the writer
 * connection, and each answer is handled only when the event loop gets to
 * that socket. Node reads a readable socket up to 32 times in a row before
 * it looks at another (libuv), so a replication socket with a backlog would
 * keep the loop for a whole batch's worth of messages while the write in
 * flight waits for its next round trip: reading and writing would take
 * turns instead of overlapping. So while a write is in flight the pump hands
 * the loop back after TURN_MS (2 ms) of accepting messages: it pauses the source,
 * holds what the socket read had left, and goes on after the writer's I/O
 * (setImmediate). Order is unchanged: held messages come first.
 *
 * Acknowledgement: after each write commits, the slot is acknowledged to the
 * checkpoint's end LSN, never further (invariant 4). Progress without events
 * (transactions of other tables, an idle keepalive's position) is written to
 * the checkpoint as an empty batch first, at most once per idleCheckpointMs,
 * so the slot's confirmed position never passes the checkpoint: a slot found
 * ahead of it was re-created, a gap (invariant 7).
 *
 * Errors: a write refused for its data becomes a BatchRefusedError naming the
 * batch's entries, so the next session can isolate and set aside the one
 * entry the table refuses (invariant 13).
 *
 * On any error the source is aborted; the caller throws this state away and
 * restarts from the database's checkpoint.
 */
import type { Sql } from "postgres";
import type { Lsn, ReplicationHandler, ReplicationSource, WalMessage } from "@tributary/wal";
import type { Batch, RelayState } from "./relay-state.ts";
import { SegmentTables, writeBatch } from "./stream-writer.ts";
import { BatchRefusedError, isDataError } from "./errors.ts";
import { CaptureReloadError } from "./cdc/capture-set.ts";

/** Test seams around each write of a batch of entries (fault injection); position-only writes skip them. */
export interface BatchHooks {
  beforeWrite?: (batch: Batch) => Promise<void> | void;
  /** The batch is committed, the slot not yet acknowledged. */
  afterCommit?: (batch: Batch) => Promise<void> | void;
  /** The acknowledgement was sent. */
  afterAck?: (batch: Batch) => Promise<void> | void;
}

export interface PumpStats {
  events: number;
  transactions: number;
  batches: number;
  rejected: number;
}

export interface PumpOptions {
  /** A batch write that takes longer fails the session. */
  readonly writeTimeoutMs: number;
  /** At most one write of a position without events per this many ms. */
  readonly idleCheckpointMs: number;
  /** A batch of events or set-aside messages committed after `seconds` of writing (metrics). */
  readonly onWritten?: (batch: Batch, seconds: number) => void;
}

/** While a write is in flight, messages are accepted for at most this long before the writer's I/O gets a turn. */
const TURN_MS = 2;

export class RelayPump implements ReplicationHandler {
  private writing: Promise<void> | null = null;
  /** A full batch waits for the write in flight; messages are held, the socket paused. */
  private blocked = false;
  /** The writer's I/O has a turn of the event loop; messages are held, the socket paused. */
  private yielding = false;
  private held: WalMessage[] = [];
  /** performance.now() when this turn began accepting messages, or null outside one. */
  private turnStartedAt: number | null = null;
  private readonly tables = new SegmentTables();
  private readonly endTurn = () => {
    this.turnStartedAt = null;
  };
  private readonly afterYield = () => {
    this.yielding = false;
    this.takeHeld();
  };
  /** performance.now() when the write in flight started, or null. */
  private writeStartedAt: number | null = null;
  private lastPositionWriteAt = 0;
  readonly stats: PumpStats = { events: 0, transactions: 0, batches: 0, rejected: 0 };

  constructor(
    /** The relay's writer: a pool of one connection, whose backend is named in the lease. */
    private readonly sql: Sql,
    private readonly state: RelayState,
    private readonly source: ReplicationSource,
    private readonly slotName: string,
    private readonly relayId: string,
    private readonly options: PumpOptions,
    private readonly hooks: BatchHooks = {},
  ) {}

  /** How long the write in flight has been running (0 when none): a stalled write is no progress. */
  writeRunningMs(): number {
    return this.writeStartedAt === null ? 0 : performance.now() - this.writeStartedAt;
  }

  onMessage(message: WalMessage): void {
    if (this.blocked || this.yielding) {
      this.held.push(message);
      return;
    }
    this.accept(message);
    if (this.writing && !this.blocked) this.yieldWhenTurnIsOver();
  }

  /** A write is in flight: after TURN_MS of accepting, its I/O gets the event loop (see "Turns" above). */
  private yieldWhenTurnIsOver(): void {
    const now = performance.now();
    if (this.turnStartedAt === null) {
      this.turnStartedAt = now;
      setImmediate(this.endTurn);
    } else if (now - this.turnStartedAt >= TURN_MS) {
      this.yielding = true;
      this.source.pause();
      setImmediate(this.afterYield);
    }
  }

  private accept(message: WalMessage): void {
    if (!this.state.accept(message)) {
      this.writeIfIdle();
    } else if (this.writing) {
      this.blocked = true;
      this.source.pause();
    } else {
      this.startWrite();
    }
  }

  durableLsn(): Lsn {
    return this.state.durableLsn();
  }

  isIdle(): boolean {
    return !this.blocked && !this.yielding && this.held.length === 0 && this.state.isIdle();
  }

  /** Writes what waits (a segment to begin, say) if no write is in flight and no transaction is open. */
  wake(): void {
    this.writeIfIdle();
  }

  /** A keepalive showed nothing committed lies unread before `lsn`. */
  onIdleAdvance(lsn: Lsn): void {
    this.state.advanceIdle(lsn);
    this.writeIfIdle();
  }

  /**
   * Adaptive batching: whenever no write is in flight and a transaction just
   * ended, write what has accumulated. While a write is in flight the next
   * batch keeps filling at full speed, so batches grow exactly when the
   * database is the bottleneck and stay small (low latency) when it is not.
   */
  private writeIfIdle(): void {
    if (this.writing || this.state.inTransaction()) return;
    if (this.state.hasBatch()) {
      this.startWrite();
    } else if (this.state.positionAhead() && performance.now() - this.lastPositionWriteAt >= this.options.idleCheckpointMs) {
      this.lastPositionWriteAt = performance.now();
      this.startWrite();
    }
  }

  private startWrite(): void {
    this.track(this.write(this.state.takeBatch()));
  }

  /** The one write in flight: on success the next may start; on error the session ends. */
  private track(write: Promise<void>): void {
    this.writeStartedAt = performance.now();
    this.writing = write.then(
      () => {
        this.writing = null;
        this.writeStartedAt = null;
        if (this.blocked) this.unblock();
        else this.writeIfIdle();
      },
      (error: unknown) => {
        // The session ends; the next one restarts from the database's checkpoint.
        this.source.abort(error);
        throw error;
      },
    );
    this.writing.catch(() => undefined);
  }

  /** The write in flight ended: write the full batch, then take the held messages. */
  private unblock(): void {
    this.blocked = false;
    this.startWrite();
    if (!this.yielding) this.takeHeld();
  }

  /** Accepts the held messages until blocked again; resumes the source once none is left. */
  private takeHeld(): void {
    const held = this.held;
    let next = 0;
    try {
      while (next < held.length && !this.blocked) this.accept(held[next++]!);
    } catch (error) {
      // Not the socket's handler here: the session must end with this error, not hang paused.
      this.source.abort(error);
      return;
    }
    this.held = next === held.length ? [] : held.slice(next);
    if (!this.blocked) this.source.resume();
  }

  private async write(batch: Batch): Promise<void> {
    // Test hooks see batches of entries, not position-only writes.
    const hooks = batch.size > 0 || batch.rejects.length > 0 ? this.hooks : {};
    await hooks.beforeWrite?.(batch);
    let version: bigint;
    const startedAt = performance.now();
    try {
      version = await writeBatch(this.sql, this.tables, this.slotName, this.relayId, batch, this.state.checkpoint.version, this.options.writeTimeoutMs);
    } catch (error) {
      if (isDataError(error) && batch.first && batch.last) {
        const e = error as { code: string; message: string };
        throw new BatchRefusedError(batch.first, batch.last, `${e.message} (SQLSTATE ${e.code})`);
      }
      throw error;
    }
    const seconds = (performance.now() - startedAt) / 1000;
    await hooks.afterCommit?.(batch);
    this.state.committed(batch, version);
    this.source.sendStatus(this.state.durableLsn(), false);
    const restartAfter = this.state.restartAfter();
    if (restartAfter !== null && this.state.checkpoint.commitLsn >= restartAfter) {
      this.source.abort(new CaptureReloadError("a table capture started, and wal2json sends table changes only to a session started with captures", "wal2json:captures"));
    }
    this.stats.events += batch.size;
    this.stats.rejected += batch.rejects.length;
    this.stats.transactions += batch.transactions;
    if (batch.size > 0 || batch.rejects.length > 0) {
      this.stats.batches++;
      this.options.onWritten?.(batch, seconds);
    }
    await hooks.afterAck?.(batch);
  }
}
