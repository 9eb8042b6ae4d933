/**
 * The relay's pure core: turns WalMessages into batches of numbered events
 * and the checkpoint that must be written with them. No I/O here.
 *
 * State machine per transaction (messages arrive in commit order):
 *
 *   begin(commitLsn) ─► skip?   commitLsn <= checkpoint.commitLsn: already in the stream
 *                      partial? commitLsn == checkpoint.partialCommitLsn: first N events are in
 *   event            ─► numbered: partition = murmur2(key) mod partitions,
 *                       offset = next offset of (stream, partition), then appended to the batch
 *   commit(endLsn)   ─► the batch's checkpoint moves to (commitLsn, endLsn)
 *
 * Backpressure and memory (invariant 6): a batch is cut when it holds
 * `maxBatchEvents` events or `maxBatchBytes` bytes, even inside a transaction;
 * the checkpoint then records how many events of that transaction are in
 * (partialCommitLsn / partialEvents), so a crash replays the transaction and
 * skips exactly those.
 *
 * Trust (invariants 12, 13): a message becomes an event only when its
 * signature verifies (readEventMessage). One that does not, or that the
 * stream table refused in an earlier session (`refused`), becomes a
 * rejection: it takes no offset and is written to tributary.rejected_messages
 * in the same database transaction as the batch, so it is set aside exactly
 * once and the relay goes on. Rejections count as entries of their
 * transaction like events, so partial-transaction progress stays exact.
 *
 * Isolation: after a batch write failed on its data, the relay retries with
 * one entry per batch up to the failed batch's last entry (`isolateThrough`),
 * so the one entry the table refuses is known and can be set aside.
 *
 * Offsets (invariant 2) are assigned here, from counters loaded from
 * tributary.partition_offsets and written back in the same database
 * transaction as the events. A failed write leaves these counters ahead of the
 * database: the caller must then discard this state and reload (crash-only).
 */
import { isRejection, partitionFor, readEventMessage, type Keyring, type RawEvent, type Rejection } from "@tributary/core";
import type { Lsn, WalMessage } from "@tributary/wal";
import { CopyRows, timestampText } from "./copy-format.ts";

/** A position in the WAL as far as the stream is concerned. */
export interface Position {
  /** Commit record LSN of the last transaction fully in the stream. */
  readonly commitLsn: Lsn;
  /** End of that commit record: what the slot is acknowledged to. */
  readonly endLsn: Lsn;
  /** A transaction only partly in the stream (cut into batches), or null. */
  readonly partialCommitLsn: Lsn | null;
  /** How many events of `partialCommitLsn` are in the stream. */
  readonly partialEvents: number;
}

export interface Checkpoint extends Position {
  /** Compare-and-set token; bumped by every write (fences zombie relays). */
  readonly version: bigint;
}

/** An entry of the stream: the `index`-th (1-based) message of the transaction committed at `commitLsn`. */
export interface EntryId {
  readonly commitLsn: Lsn;
  readonly index: number;
}

export const entryKey = (entry: EntryId): string => `${entry.commitLsn}:${entry.index}`;

const entryBefore = (a: EntryId, b: EntryId): boolean => a.commitLsn < b.commitLsn || (a.commitLsn === b.commitLsn && a.index <= b.index);

/** A committed message set aside (tributary.rejected_messages). */
export interface RejectedMessage {
  readonly lsn: Lsn;
  readonly commitLsn: Lsn;
  readonly reason: Rejection["reason"] | "write_failed";
  readonly detail: string;
  readonly stream: string | null;
  readonly eventId: string | null;
  /** The message content (a copy). */
  readonly raw: Buffer;
}

export interface Batch {
  /** The events as COPY text rows for (stream, partition, offset, id, key, type, data, headers, committed_at). */
  readonly rows: Buffer;
  readonly size: number;
  readonly rejects: readonly RejectedMessage[];
  /** The first and last entries (events or rejections) of the batch; null when it has none. */
  readonly first: EntryId | null;
  readonly last: EntryId | null;
  /** Next offsets to persist for the partitions this batch touched. */
  readonly offsets: ReadonlyArray<{ stream: string; partition: number; nextOffset: string }>;
  /** Where the stream stands once this batch is in. */
  readonly position: Position;
  /** Transactions completed by this batch (for metrics). */
  readonly transactions: number;
}

export interface BatchLimits {
  readonly maxBatchEvents: number;
  readonly maxBatchBytes: number;
}

export interface TrustOptions {
  readonly keyring: Keyring;
  /** Entries the stream table refused in an earlier session (entryKey → the database's error). */
  readonly refused?: ReadonlyMap<string, string>;
  /** Write one entry per batch up to and including this entry. */
  readonly isolateThrough?: EntryId | null;
}

interface OpenTransaction {
  readonly commitLsn: Lsn;
  /** committed_at as COPY text. */
  readonly committedAt: string;
  readonly skipAll: boolean;
  /** Events of this transaction to skip (already in the stream). */
  readonly skipFirst: number;
  /** Events of this transaction seen so far. */
  seen: number;
}

/** Next offsets of one stream's partitions (numbers: exact up to 2^53 events per partition). */
interface StreamOffsets {
  readonly next: number[];
  /** Partitions this batch touched, and the same as flags. */
  touched: number[];
  touchedFlags: Uint8Array;
}

const maxLsn = (a: Lsn, b: Lsn): Lsn => (a > b ? a : b);

export class RelayState {
  private durable: Checkpoint;
  /** Where the stream stands once everything accepted so far is written. */
  private pending: Position;
  private readonly offsets = new Map<string, StreamOffsets>();
  /** Streams whose offsets this batch touched. */
  private touchedStreams: string[] = [];
  private rows = new CopyRows();
  private events = 0;
  private rejects: RejectedMessage[] = [];
  private rejectBytes = 0;
  private first: EntryId | null = null;
  private last: EntryId | null = null;
  private transactionsInBatch = 0;
  private open: OpenTransaction | null = null;
  private inFlight: Batch | null = null;

  constructor(
    checkpoint: Checkpoint,
    offsets: Iterable<{ stream: string; partition: number; nextOffset: bigint }>,
    private readonly limits: BatchLimits,
    private readonly trust: TrustOptions,
  ) {
    this.durable = checkpoint;
    this.pending = checkpoint;
    for (const o of offsets) {
      if (o.nextOffset > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`offset ${o.nextOffset} of ${o.stream}/${o.partition} exceeds 2^53`);
      this.streamOffsets(o.stream).next[o.partition] = Number(o.nextOffset);
    }
  }

  get checkpoint(): Checkpoint {
    return this.durable;
  }

  /**
   * What the slot may be acknowledged to: the checkpoint's end LSN, never
   * further (invariant 4), so a slot ahead of its checkpoint is a gap (7).
   */
  durableLsn(): Lsn {
    return this.durable.endLsn;
  }

  /**
   * Nothing waits to be written but the position moved past the checkpoint
   * (transactions without events, an idle keepalive): an empty batch would
   * carry it to the checkpoint, and the slot may then be acknowledged to it.
   */
  positionAhead(): boolean {
    return this.inFlight === null && this.open === null && this.pending.endLsn > this.durable.endLsn;
  }

  /** No transaction is open and no event waits to be written. */
  isIdle(): boolean {
    return this.open === null && !this.hasBatch() && this.inFlight === null;
  }

  /** A keepalive showed that nothing committed lies unread before `lsn`: the position may move there. */
  advanceIdle(lsn: Lsn): void {
    if (this.isIdle()) this.pending = { ...this.pending, endLsn: maxLsn(this.pending.endLsn, lsn) };
  }

  inTransaction(): boolean {
    return this.open !== null;
  }

  /** Whether events or rejections wait to be written. */
  hasBatch(): boolean {
    return this.events > 0 || this.rejects.length > 0;
  }

  /**
   * Feeds one message. Returns true when the batch is full and must be taken
   * before the next message is accepted.
   */
  accept(message: WalMessage): boolean {
    switch (message.kind) {
      case "begin":
        return this.begin(message.commitLsn, message.commitTimeMicros);
      case "message":
        return this.message(message.lsn, message.content);
      case "commit":
        return this.commit(message.commitLsn, message.endLsn);
    }
  }

  private begin(commitLsn: Lsn, commitTimeMicros: bigint): boolean {
    if (this.open) throw new Error(`begin of ${commitLsn} inside open transaction ${this.open.commitLsn}`);
    const skipAll = commitLsn <= this.pending.commitLsn;
    const skipFirst = this.pending.partialCommitLsn === commitLsn ? this.pending.partialEvents : 0;
    const committedAt = skipAll ? "" : timestampText(commitTimeMicros);
    this.open = { commitLsn, committedAt, skipAll, skipFirst, seen: 0 };
    return false;
  }

  private message(lsn: Lsn, content: Buffer): boolean {
    const tx = this.open;
    if (!tx) throw new Error("message outside a transaction");
    tx.seen++;
    if (tx.skipAll || tx.seen <= tx.skipFirst) return false;
    const entry: EntryId = { commitLsn: tx.commitLsn, index: tx.seen };
    const read = readEventMessage(this.trust.keyring, content);
    const refusal = this.trust.refused?.get(entryKey(entry));
    if (isRejection(read) || refusal !== undefined) {
      const event = isRejection(read) ? null : read;
      const rejected: RejectedMessage = {
        lsn,
        commitLsn: tx.commitLsn,
        reason: refusal !== undefined ? "write_failed" : (read as Rejection).reason,
        detail: storable(refusal !== undefined ? `the stream table refused it: ${refusal}` : (read as Rejection).detail),
        stream: event ? storable(event.stream) : null,
        eventId: event ? storable(event.id) : null,
        raw: Buffer.from(content),
      };
      this.rejects.push(rejected);
      this.rejectBytes += content.length;
    } else {
      this.number(read, tx);
    }
    this.first ??= entry;
    this.last = entry;
    const isolating = this.trust.isolateThrough != null && entryBefore(entry, this.trust.isolateThrough);
    const entries = this.events + this.rejects.length;
    const full = isolating || entries >= this.limits.maxBatchEvents || this.rows.byteLength + this.rejectBytes >= this.limits.maxBatchBytes;
    if (full) {
      // Cut inside the transaction: record how far into it the batch reaches.
      this.pending = { ...this.pending, partialCommitLsn: tx.commitLsn, partialEvents: tx.seen };
    }
    return full;
  }

  private number(event: RawEvent, tx: OpenTransaction): void {
    const partition = partitionFor(event.key, event.partitions);
    const offsets = this.streamOffsets(event.stream);
    const offset = offsets.next[partition] ?? 0;
    offsets.next[partition] = offset + 1;
    if (offsets.touched.length === 0) this.touchedStreams.push(event.stream);
    if (offsets.touchedFlags[partition] !== 1) {
      if (partition >= offsets.touchedFlags.length) offsets.touchedFlags = grow(offsets.touchedFlags, partition + 1);
      offsets.touchedFlags[partition] = 1;
      offsets.touched.push(partition);
    }
    this.rows
      .text(event.stream).endField()
      .plain(`${partition}`).endField()
      .plain(`${offset}`).endField()
      .text(event.id).endField()
      .text(event.key).endField()
      .text(event.type).endField()
      .bytes(event.data).endField()
      .bytes(event.headers).endField()
      .plain(tx.committedAt).endRow();
    this.events++;
  }

  private commit(commitLsn: Lsn, endLsn: Lsn): boolean {
    const tx = this.open;
    if (!tx || tx.commitLsn !== commitLsn) throw new Error(`commit ${commitLsn} does not match begin ${tx?.commitLsn}`);
    this.open = null;
    if (tx.skipAll) return false;
    this.pending = { commitLsn, endLsn, partialCommitLsn: null, partialEvents: 0 };
    this.transactionsInBatch++;
    return false;
  }

  /** Takes the waiting events (maybe none: a position) for writing; at most one batch may be in flight. */
  takeBatch(): Batch {
    if (this.inFlight) throw new Error("takeBatch while a batch is in flight");
    const offsets: Array<{ stream: string; partition: number; nextOffset: string }> = [];
    for (const stream of this.touchedStreams) {
      const streamOffsets = this.offsets.get(stream)!;
      for (const partition of streamOffsets.touched) {
        offsets.push({ stream, partition, nextOffset: `${streamOffsets.next[partition]}` });
        streamOffsets.touchedFlags[partition] = 0;
      }
      streamOffsets.touched = [];
    }
    const batch: Batch = {
      rows: this.rows.view(),
      size: this.events,
      rejects: this.rejects,
      first: this.first,
      last: this.last,
      offsets,
      position: this.pending,
      transactions: this.transactionsInBatch,
    };
    this.inFlight = batch;
    this.rows = new CopyRows();
    this.touchedStreams = [];
    this.events = 0;
    this.rejects = [];
    this.rejectBytes = 0;
    this.first = this.last = null;
    this.transactionsInBatch = 0;
    return batch;
  }

  /** The in-flight batch is durably in the stream with checkpoint `version`. */
  committed(batch: Batch, version: bigint): void {
    if (this.inFlight !== batch) throw new Error("committed() for a batch that is not in flight");
    this.inFlight = null;
    this.durable = { ...batch.position, version };
  }

  private streamOffsets(stream: string): StreamOffsets {
    let offsets = this.offsets.get(stream);
    if (!offsets) {
      offsets = { next: [], touched: [], touchedFlags: new Uint8Array(16) };
      this.offsets.set(stream, offsets);
    }
    return offsets;
  }
}

/** Text PostgreSQL can store: no NUL characters (the detail quotes raw bytes). */
const storable = (text: string): string => text.replace(/\u0000/g, "\\0");

function grow(flags: Uint8Array, length: number): Uint8Array {
  const grown = new Uint8Array(Math.max(length, flags.length * 2));
  grown.set(flags);
  return grown;
}
