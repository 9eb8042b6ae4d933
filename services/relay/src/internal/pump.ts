/**
 * Moves WalMessages from the replication source into the stream table.
 *
 * Backpressure: messages are accepted into the current batch, which is
 * written at the next transaction boundary whenever no write is in flight,
 * or as soon as it is full. At most one write is in flight; when a second
 * batch is full before the first is written, the handler's promise pauses
 * the socket.
 * Memory is therefore at most two batches, whatever the transaction or
 * backlog size (invariant 6).
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
  readonly stats: PumpStats = { events: 0, transactions: 0, batches: 0 };

  constructor(
    private readonly sql: Sql,
    private readonly state: RelayState,
    private readonly source: ReplicationSource,
    private readonly slotName: string,
    private readonly relayId: string,
    private readonly hooks: BatchHooks = {},
  ) {}

  onMessage(message: WalMessage): void | Promise<void> {
    const full = this.state.accept(message);
    if (full) return this.flushFull();
    this.writeIfIdle();
  }

  durableLsn(): Lsn {
    return this.state.durableLsn();
  }

  isIdle(): boolean {
    return this.state.isIdle();
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

  /** The batch is full: wait for the write in flight (backpressure), then write it. */
  private async flushFull(): Promise<void> {
    while (this.writing) await this.writing;
    this.startWrite();
  }

  private startWrite(): void {
    const batch = this.state.takeBatch();
    this.writing = this.write(batch).then(
      () => {
        this.writing = null;
        this.writeIfIdle();
      },
      (error: unknown) => {
        // The session ends; the next one restarts from the database's checkpoint.
        this.source.abort(error);
        throw error;
      },
    );
    this.writing.catch(() => undefined);
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
