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
import type { ColumnValue, Lsn, RowChange, WalMessage } from "@tributary/wal";
import { CopyRows, timestampBinary, timestampText } from "./binary-copy.ts";
import { CaptureReloadError, readControl, type Capture, type CaptureSet, type Reloads } from "./cdc/capture-set.ts";
import { changeEvents, type ChangeEvent, type ChangeSource, type JsonOf } from "./cdc/change-event.ts";
import type { Chunk, Chunks } from "./cdc/chunks.ts";
import type { RecentCommits } from "./cdc/recent-commits.ts";

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
  /** capture_failed: a captured table's change that cannot become an event (its key is missing, a value is unreadable). */
  readonly reason: Rejection["reason"] | "write_failed" | "capture_failed";
  readonly detail: string;
  readonly stream: string | null;
  readonly eventId: string | null;
  /** The message content (a copy). */
  readonly raw: Buffer;
}

export interface Batch {
  /** The events, each stream's apart: they go to its current segment's table. */
  readonly rows: readonly StreamRows[];
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
  /** Segments this batch begins (migration 0011): from the batch on, their streams' rows go there. */
  readonly rolls: ReadonlyArray<SegmentStart>;
  /** What the batch changes in tributary.table_captures, in the same database transaction. */
  readonly captures: CaptureProgress;
}

/**
 * One stream's events of a batch as binary COPY rows (binary-copy.ts) for
 * (stream, partition, offset, id, key, type, data, headers, committed_at,
 * segment), in chunks, header first and trailer last, all for one segment:
 * the one current while they were numbered.
 */
export interface StreamRows {
  readonly stream: string;
  readonly segment: number;
  readonly chunks: readonly Buffer[];
}

/**
 * A segment the relay begins writing: its stream's partitions' next offsets
 * at that moment (first_offsets[p] for partition p), written to
 * tributary.segments with the batch. Every row of the stream written before
 * is in an earlier segment, every row after in this one, so a partition's
 * offsets rise with its segments (docs/ARCHITECTURE.md invariant 15).
 */
export interface SegmentStart {
  readonly stream: string;
  readonly segment: number;
  readonly firstOffsets: readonly string[];
}

/** Table capture's bookkeeping, written with the batch that carries it (migration 0009). */
export interface CaptureProgress {
  /** Captures whose start (their capture() transaction, committed at `lsn`) this batch passes. */
  readonly starts: Array<{ id: string; lsn: Lsn }>;
  readonly stops: Array<{ id: string; lsn: Lsn }>;
  /** Captures with changes in this batch, and the last one's commit time (COPY timestamptz text). */
  readonly touched: Map<string, string>;
  /** Snapshot chunks put into the stream by this batch. */
  readonly snapshots: Array<{ id: string; requestedAt: string; cursor: string[]; rows: number; done: boolean; chunk: Chunk }>;
}

const noProgress = (): CaptureProgress => ({ starts: [], stops: [], touched: new Map(), snapshots: [] });
const hasProgress = (p: CaptureProgress): boolean => p.starts.length + p.stops.length + p.touched.size + p.snapshots.length > 0;

/** What a session knows of table capture (cdc/capture-set.ts, cdc/chunks.ts). */
export interface CdcContext {
  readonly captures: CaptureSet;
  readonly chunks: Chunks;
  readonly recent: RecentCommits;
  /** A column's JSON; throws CaptureReloadError for a type the session has not loaded. */
  readonly jsonOf: JsonOf;
  readonly reloads: Reloads;
  /** wal2json was started without table changes: the first capture's start needs a new session. */
  readonly restartOnCaptureStart: boolean;
  /** A backfill was requested (the snapshotter looks at once). */
  readonly onBackfill?: () => void;
  readonly now?: () => number;
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
  readonly xid: number;
  readonly commitTimeMs: number;
  readonly commitTimeMicros: bigint;
  /** committed_at as a binary COPY field (8 bytes). */
  readonly committedAt: Buffer;
  /** committed_at as text, made when first needed (table captures' last change). */
  committedAtText: string | null;
  readonly skipAll: boolean;
  /** Events of this transaction to skip (already in the stream). */
  readonly skipFirst: number;
  /** Events of this transaction seen so far. */
  seen: number;
}

/** Next offsets of one stream's partitions (numbers: exact up to 2^53 events per partition). */
interface StreamOffsets {
  readonly next: number[];
  /** The storage segment its rows go to (migration 0010). */
  segment: number;
  /** This batch's rows of the stream; null when it has none. */
  rows: CopyRows | null;
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
  /** Bytes of the rows of every stream in this batch. */
  private rowBytes = 0;
  private events = 0;
  private rejects: RejectedMessage[] = [];
  private rejectBytes = 0;
  private first: EntryId | null = null;
  private last: EntryId | null = null;
  private transactionsInBatch = 0;
  private open: OpenTransaction | null = null;
  private inFlight: Batch | null = null;
  private progress = noProgress();
  /** Segments created ahead (tributary.roll_segments) that the next batch begins, by stream. */
  private readonly rollsRequested = new Map<string, { segment: number; partitions: number }>();
  /** A transaction after whose commit the session must start again (wal2json's first capture), or null. */
  private restartAfterLsn: Lsn | null = null;

  constructor(
    checkpoint: Checkpoint,
    offsets: Iterable<{ stream: string; partition: number; nextOffset: bigint }>,
    private readonly limits: BatchLimits,
    private readonly trust: TrustOptions,
    private readonly cdc: CdcContext | null = null,
    /** Each stream's current storage segment; a stream not named writes to segment 0. */
    segments: Iterable<{ stream: string; segment: number }> = [],
  ) {
    this.durable = checkpoint;
    this.pending = checkpoint;
    for (const o of offsets) {
      if (o.nextOffset > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`offset ${o.nextOffset} of ${o.stream}/${o.partition} exceeds 2^53`);
      this.streamOffsets(o.stream).next[o.partition] = Number(o.nextOffset);
    }
    for (const s of segments) this.streamOffsets(s.stream).segment = s.segment;
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

  /** Whether events, rejections, capture bookkeeping or a segment to begin wait to be written. */
  hasBatch(): boolean {
    return this.events > 0 || this.rejects.length > 0 || hasProgress(this.progress) || this.rollsRequested.size > 0;
  }

  /**
   * The next segment of `stream` exists (created ahead, empty): the next
   * batch begins it. Only the segment after the current one can begin; any
   * other request is stale (already begun) and is ignored.
   */
  requestRoll(stream: string, segment: number, partitions: number): void {
    if (segment !== this.streamOffsets(stream).segment + 1) return;
    this.rollsRequested.set(stream, { segment, partitions });
  }

  /** The stream's current segment. */
  segmentOf(stream: string): number {
    return this.offsets.get(stream)?.segment ?? 0;
  }

  /**
   * Once the checkpoint reaches this commit LSN the session must end and a
   * new one start (it will read what this one's decoder was not asked for).
   */
  restartAfter(): Lsn | null {
    return this.restartAfterLsn;
  }

  /**
   * Feeds one message. Returns true when the batch is full and must be taken
   * before the next message is accepted.
   */
  accept(message: WalMessage): boolean {
    switch (message.kind) {
      case "begin":
        return this.begin(message.commitLsn, message.commitTimeMicros, message.xid);
      case "message":
        return this.message(message.lsn, message.content);
      case "commit":
        return this.commit(message.commitLsn, message.endLsn);
      case "change":
        return this.changes(message.lsn, message.changes);
      case "control":
        return this.control(message.lsn, message.content);
    }
  }

  private begin(commitLsn: Lsn, commitTimeMicros: bigint, xid: number): boolean {
    if (this.open) throw new Error(`begin of ${commitLsn} inside open transaction ${this.open.commitLsn}`);
    const skipAll = commitLsn <= this.pending.commitLsn;
    const skipFirst = this.pending.partialCommitLsn === commitLsn ? this.pending.partialEvents : 0;
    const committedAt = skipAll ? NO_TIME : timestampBinary(commitTimeMicros);
    this.open = { commitLsn, xid, commitTimeMs: Number(commitTimeMicros / 1000n), commitTimeMicros, committedAt, committedAtText: null, skipAll, skipFirst, seen: 0 };
    return false;
  }

  /**
   * Counts one entry (an event or a rejection) of the open transaction: null
   * when it is already in the stream (a replay), else its id; the caller
   * then adds it and it becomes the batch's last entry.
   */
  private entry(tx: OpenTransaction): EntryId | null {
    tx.seen++;
    if (tx.skipAll || tx.seen <= tx.skipFirst) return null;
    const entry: EntryId = { commitLsn: tx.commitLsn, index: tx.seen };
    this.first ??= entry;
    this.last = entry;
    return entry;
  }

  /** Whether the batch must be cut after the entries just added; records how far into the transaction it reaches. */
  private cut(tx: OpenTransaction): boolean {
    const isolating = this.trust.isolateThrough != null && this.last !== null && entryBefore(this.last, this.trust.isolateThrough);
    const entries = this.events + this.rejects.length;
    const full = isolating || entries >= this.limits.maxBatchEvents || this.rowBytes + this.rejectBytes >= this.limits.maxBatchBytes;
    if (full) this.pending = { ...this.pending, partialCommitLsn: tx.commitLsn, partialEvents: tx.seen };
    return full;
  }

  private changes(lsn: Lsn, changes: readonly RowChange[]): boolean {
    const tx = this.open;
    if (!tx) throw new Error("row change outside a transaction");
    const cdc = this.cdc;
    if (!cdc || tx.skipAll) return false;
    const source: ChangeSource = { database: cdc.captures.database, lsn, txId: tx.xid, commitTimeMs: tx.commitTimeMs, snapshot: false };
    let added = false;
    for (const found of changes) {
      const capture = this.captureOf(cdc, found, tx.commitLsn);
      if (!capture) continue;
      // A partition's change (wal2json names the partition) is its captured root's.
      const change = found.table === capture.table && found.schema === capture.schema ? found : { ...found, schema: capture.schema, table: capture.table };
      if (this.addChange(cdc, capture, change, source, tx, null)) added = true;
    }
    return added && this.cut(tx);
  }

  /**
   * A row change as entries of `tx`: its events, numbered, or one rejection
   * when it cannot become events. A streamed change (`chunk` null) marks its
   * keys for the snapshot chunks and recent commits; a chunk's read leaves
   * out the keys changed in the chunk's window. True when an entry was added.
   */
  private addChange(cdc: CdcContext, capture: Capture, change: RowChange, source: ChangeSource, tx: OpenTransaction, chunk: Chunk | null): boolean {
    let events: ChangeEvent[];
    try {
      events = changeEvents(change, capture.shape, source, cdc.jsonOf, cdc.now?.() ?? Date.now());
    } catch (error) {
      if (error instanceof CaptureReloadError) throw error;
      if (!this.entry(tx)) return false;
      this.rejectChange(source.lsn, tx, capture, change, error);
      return true;
    }
    let added = false;
    for (const event of events) {
      if (chunk === null) {
        cdc.chunks.observe(capture.id, event.key);
        cdc.recent.touch(tx.xid, tx.commitLsn, capture.id, event.key);
      } else if (chunk.changed.has(event.key)) {
        continue;
      }
      const entry = this.entry(tx);
      if (entry) {
        this.numberChange(event, capture, entry, tx);
        added = true;
      }
    }
    return added;
  }

  private captureOf(cdc: CdcContext, change: RowChange, commitLsn: Lsn): Capture | null {
    try {
      return cdc.captures.find(change, commitLsn);
    } catch (error) {
      if (error instanceof CaptureReloadError && cdc.reloads.once(error.reloadKey)) throw error;
      return null;
    }
  }

  private numberChange(event: ChangeEvent, capture: Capture, entry: EntryId, tx: OpenTransaction): void {
    this.number({
      stream: event.stream, key: event.key, partitions: capture.partitions, id: entryUuid(entry), type: event.type,
      data: event.data, headers: EMPTY_HEADERS,
    }, tx);
    this.progress.touched.set(capture.id, (tx.committedAtText ??= timestampText(tx.commitTimeMicros)));
  }

  private rejectChange(lsn: Lsn, tx: OpenTransaction, capture: Capture, change: RowChange, error: unknown): void {
    const raw = Buffer.from(JSON.stringify(change), "utf8");
    this.rejects.push({
      lsn, commitLsn: tx.commitLsn, reason: "capture_failed",
      detail: storable(`a change of ${capture.schema}.${capture.table} cannot become an event: ${(error as Error).message ?? String(error)}`),
      stream: storable(capture.shape.stream), eventId: null, raw,
    });
    this.rejectBytes += raw.length;
  }

  private control(lsn: Lsn, content: Buffer): boolean {
    const tx = this.open;
    if (!tx) throw new Error("control message outside a transaction");
    const cdc = this.cdc;
    const control = cdc ? readControl(content) : null;
    if (!cdc || !control) return false;
    if (control.op === "watermark") {
      if (tx.skipAll) return false;
      if (control.edge === "low") {
        cdc.chunks.low(control.chunk, tx.commitLsn);
        return false;
      }
      return this.snapshotChunk(cdc, control.chunk, lsn, tx);
    }
    const capture = cdc.captures.capture(control.id);
    if (!capture) {
      // A capture created after this session loaded them (or a forged id: ended for once only).
      if (BigInt(control.id) > cdc.captures.maxId && cdc.reloads.once(`capture:${control.id}`)) {
        throw new CaptureReloadError(`capture ${control.id} was created after this session loaded its captures: loading them again`, `capture:${control.id}`);
      }
      return false;
    }
    if (capture.token !== control.token) return false; // not written by capture(): a forged message
    if (control.op === "capture" && capture.startLsn === null) {
      capture.startLsn = tx.commitLsn;
      if (!tx.skipAll) this.progress.starts.push({ id: capture.id, lsn: tx.commitLsn });
      if (cdc.restartOnCaptureStart) this.restartAfterLsn ??= tx.commitLsn;
    } else if (control.op === "uncapture" && capture.stopLsn === null) {
      capture.stopLsn = tx.commitLsn;
      if (!tx.skipAll) this.progress.stops.push({ id: capture.id, lsn: tx.commitLsn });
    } else if (control.op === "backfill") {
      cdc.onBackfill?.();
    }
    return false;
  }

  /** H of a chunk this session holds: its rows no change in the window touched become 'r' events here. */
  private snapshotChunk(cdc: CdcContext, chunkId: string, lsn: Lsn, tx: OpenTransaction): boolean {
    const chunk = cdc.chunks.high(chunkId);
    if (!chunk) return false;
    const { capture } = chunk;
    if (capture.stopLsn !== null && tx.commitLsn > capture.stopLsn) {
      chunk.settle(false); // uncaptured since the chunk was read
      return false;
    }
    // Transactions the read did not see but that committed before L: their rows' reads are stale.
    for (const xid of chunk.invisible) {
      const commit = cdc.recent.get(xid);
      if (!commit || chunk.lowLsn === null || commit.commitLsn >= chunk.lowLsn || !commit.captures.includes(capture.id)) continue;
      const keys = cdc.recent.keys(xid, capture.id);
      if (keys === null) {
        chunk.settle(false); // its keys were not kept: read the chunk again
        return false;
      }
      for (const key of keys) chunk.changed.add(key);
    }
    const rows = chunk.rows!;
    const source: ChangeSource = { database: cdc.captures.database, lsn, txId: tx.xid, commitTimeMs: tx.commitTimeMs, snapshot: true };
    let added = false;
    for (const columns of rows) {
      const read: RowChange = { kind: "insert", schema: capture.schema, table: capture.table, columns };
      if (this.addChange(cdc, capture, read, source, tx, chunk)) added = true;
    }
    const last = rows[rows.length - 1];
    this.progress.snapshots.push({
      id: capture.id, requestedAt: chunk.requestedAt, rows: rows.length, done: chunk.last,
      cursor: last ? capture.shape.keyColumns.map((name) => keyText(last, name)) : [],
      chunk,
    });
    return added && this.cut(tx);
  }

  private message(lsn: Lsn, content: Buffer): boolean {
    const tx = this.open;
    if (!tx) throw new Error("message outside a transaction");
    const entry = this.entry(tx);
    if (entry === null) return false;
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
    return this.cut(tx);
  }

  /** An event to number: an appended one (jsonb text bytes from the WAL) or a change event (text built here). */
  private number(event: Omit<RawEvent, "data" | "headers"> & { data: Buffer | string; headers: Buffer }, tx: OpenTransaction): void {
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
    // Small first chunks: a batch may touch many streams, most with a few events.
    const rows = (offsets.rows ??= new CopyRows(ROW_CHUNK_BYTES, FIRST_ROW_CHUNK_BYTES));
    const before = rows.byteLength;
    rows
      .row(10)
      .text(event.stream)
      .int4(partition)
      .int8(offset)
      .uuid(event.id)
      .text(event.key)
      .text(event.type)
      .jsonb(event.data)
      .jsonb(event.headers)
      .bytes(tx.committedAt)
      .int4(offsets.segment);
    this.rowBytes += rows.byteLength - before;
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
    const rows: StreamRows[] = [];
    for (const stream of this.touchedStreams) {
      const streamOffsets = this.offsets.get(stream)!;
      if (streamOffsets.rows !== null) {
        rows.push({ stream, segment: streamOffsets.segment, chunks: streamOffsets.rows.chunks() });
        streamOffsets.rows = null;
      }
      for (const partition of streamOffsets.touched) {
        offsets.push({ stream, partition, nextOffset: `${streamOffsets.next[partition]}` });
        streamOffsets.touchedFlags[partition] = 0;
      }
      streamOffsets.touched = [];
    }
    // After the rows above (encoded for the current segments) and before any row of the next batch.
    const rolls: SegmentStart[] = [];
    for (const [stream, roll] of this.rollsRequested) {
      const streamOffsets = this.streamOffsets(stream);
      const firstOffsets = Array.from({ length: Math.max(roll.partitions, streamOffsets.next.length) }, (_, p) => `${streamOffsets.next[p] ?? 0}`);
      streamOffsets.segment = roll.segment;
      rolls.push({ stream, segment: roll.segment, firstOffsets });
    }
    this.rollsRequested.clear();
    const batch: Batch = {
      rows,
      rolls,
      size: this.events,
      rejects: this.rejects,
      first: this.first,
      last: this.last,
      offsets,
      position: this.pending,
      transactions: this.transactionsInBatch,
      captures: this.progress,
    };
    this.inFlight = batch;
    this.rowBytes = 0;
    this.touchedStreams = [];
    this.events = 0;
    this.rejects = [];
    this.rejectBytes = 0;
    this.first = this.last = null;
    this.transactionsInBatch = 0;
    this.progress = noProgress();
    return batch;
  }

  /** The in-flight batch is durably in the stream with checkpoint `version`. */
  committed(batch: Batch, version: bigint): void {
    if (this.inFlight !== batch) throw new Error("committed() for a batch that is not in flight");
    this.inFlight = null;
    this.durable = { ...batch.position, version };
    // The snapshotter reads a chunk's successor from the cursor this batch wrote.
    for (const snapshot of batch.captures.snapshots) snapshot.chunk.settle(true);
  }

  private streamOffsets(stream: string): StreamOffsets {
    let offsets = this.offsets.get(stream);
    if (!offsets) {
      offsets = { next: [], segment: 0, rows: null, touched: [], touchedFlags: new Uint8Array(16) };
      this.offsets.set(stream, offsets);
    }
    return offsets;
  }
}

const EMPTY_HEADERS = Buffer.from("{}", "utf8");
/** A skipped transaction's commit time: its events are not written. */
const NO_TIME = Buffer.alloc(0);
const ROW_CHUNK_BYTES = 256 * 1024;
const FIRST_ROW_CHUNK_BYTES = 4 * 1024;

/**
 * A change event's id, the same in every session that replays it: a UUID
 * (version 8, RFC 9562's custom layout) holding the entry's commit LSN and
 * index. Appended events' ids are random version 4 UUIDs, so the two never
 * collide.
 */
export function entryUuid(entry: EntryId): string {
  const hex = entry.commitLsn.toString(16).padStart(16, "0") + (entry.index >>> 0).toString(16).padStart(8, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(12, 15)}-8${hex.slice(15, 18)}-${hex.slice(18, 24)}000000`;
}

function keyText(columns: readonly ColumnValue[], name: string): string {
  const column = columns.find((c) => c.name === name);
  if (!column || column.text === null) throw new Error(`snapshot row without its key column ${name}`);
  return column.text;
}

/** Text PostgreSQL can store: no NUL characters (the detail quotes raw bytes). */
const storable = (text: string): string => text.replace(/\u0000/g, "\\0");

function grow(flags: Uint8Array, length: number): Uint8Array {
  const grown = new Uint8Array(Math.max(length, flags.length * 2));
  grown.set(flags);
  return grown;
}
