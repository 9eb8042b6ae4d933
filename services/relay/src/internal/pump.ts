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
 * Acknowledgement: after each write commits, the slot is acknowledged to the
 * checkpoint's end LSN, never further (invariant 4).
 *
 * On any error the source is aborted; the caller throws this state away and
 * restarts from the database's checkpoint.
 */
import type { Sql } from "postgres";
import type { Lsn, ReplicationHandler, ReplicationSource, WalMessage } from "@tributary/wal";
import type { Batch, RelayState } from "./relay-state.ts";
import { writeBatch } from "./stream-writer.ts";

/** Test seams around each batch write (fault injection). */
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
}

export class RelayPump implements ReplicationHandler {
  private writing: Promise<void> | null = null;
  /** A full batch waits for the write in flight; messages are held, the socket paused. */
  private blocked = false;
  private held: WalMessage[] = [];
  readonly stats: PumpStats = { events: 0, transactions: 0, batches: 0 };

  constructor(
    private readonly sql: Sql,
    private readonly state: RelayState,
    private readonly source: ReplicationSource,
    private readonly slotName: string,
    private readonly relayId: string,
    private readonly hooks: BatchHooks = {},
  ) {}

  onMessage(message: WalMessage): void {
    if (this.blocked) {
      this.held.push(message);
      return;
    }
    this.accept(message);
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
    return !this.blocked && this.state.isIdle();
  }

  onIdleAdvance(lsn: Lsn): void {
    this.state.advanceIdle(lsn);
  }

  /**
   * Adaptive batching: whenever no write is in flight and a transaction just
   * ended, write what has accumulated. While a write is in flight the next
   * batch keeps filling at full speed, so batches grow exactly when the
   * database is the bottleneck and stay small (low latency) when it is not.
   */
  private writeIfIdle(): void {
    if (this.writing || this.state.inTransaction() || !this.state.hasBatch()) return;
    this.startWrite();
  }

  private startWrite(): void {
    const batch = this.state.takeBatch();
    this.writing = this.write(batch).then(
      () => {
        this.writing = null;
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

  /** The write in flight ended: write the full batch, then take the held messages until blocked again. */
  private unblock(): void {
    this.blocked = false;
    this.startWrite();
    const held = this.held;
    let next = 0;
    while (next < held.length && !this.blocked) this.accept(held[next++]!);
    this.held = held.slice(next);
    if (!this.blocked) this.source.resume();
  }

  private async write(batch: Batch): Promise<void> {
    await this.hooks.beforeWrite?.(batch);
    const version = await writeBatch(this.sql, this.slotName, this.relayId, batch, this.state.checkpoint.version);
    await this.hooks.afterCommit?.(batch);
    this.state.committed(batch, version);
    this.source.sendStatus(this.state.durableLsn(), false);
    this.stats.events += batch.size;
    this.stats.transactions += batch.transactions;
    this.stats.batches++;
    await this.hooks.afterAck?.(batch);
  }
}
