/**
 * Snapshot chunks between the snapshotter (which reads them) and the relay
 * state (which puts them into the stream), by watermarks in the WAL, as in
 * Netflix's DBLog:
 *
 *   snapshotter: register chunk ─► emit low watermark L ─► read the chunk's
 *                rows (key order, after the cursor) ─► emit high watermark H
 *   relay state: at L, open the chunk's window; every change of the table in
 *                the window marks its key; at H, the chunk's rows whose key
 *                no change marked become 'r' events, in H's place in the WAL.
 *
 * A row changed inside the window has a change event in the stream that is
 * at least as new as what the chunk read, so its read is dropped; a row not
 * changed in the window was the same from L to H, so its read is current as
 * of H and every later change comes after it. Replaying a table's stream per
 * key therefore gives its rows (invariant 14).
 *
 * Watermarks are emitted alone in their own transactions and name the chunk
 * by a random id: a session that replays L or H of a chunk it does not hold
 * (a crash lost it) yields nothing for it, the chunk's progress was not
 * written, and the snapshotter reads it again. A watermark forged by another
 * role names no chunk this relay holds.
 */
import type { ColumnValue } from "@tributary/wal";
import type { Capture } from "./capture-set.ts";

export interface Chunk {
  readonly id: string;
  readonly capture: Capture;
  /** snapshot_requested_at of the request being served (guards progress writes against a newer backfill). */
  readonly requestedAt: string;
  /** The rows read, in key order; null until read. */
  rows: ColumnValue[][] | null;
  /** Whether this chunk is the request's last (fewer rows than asked for). */
  last: boolean;
  /** Between L and H in the WAL. */
  open: boolean;
  /** The low watermark's commit LSN, once seen. */
  lowLsn: bigint | null;
  /** Transactions (32-bit xids) the read's snapshot did not see (recent-commits.ts). */
  invisible: ReadonlySet<number>;
  /** Keys changed in the window. */
  readonly changed: Set<string>;
  /** Settles once H was handled (true) or the chunk was dropped (false). */
  readonly done: Promise<boolean>;
  settle(handled: boolean): void;
}

export class Chunks {
  private readonly chunks = new Map<string, Chunk>();
  /** Open chunks by capture id. */
  private readonly openByCapture = new Map<string, Chunk>();

  register(id: string, capture: Capture, requestedAt: string): Chunk {
    let settle: (handled: boolean) => void = () => {};
    const done = new Promise<boolean>((resolve) => (settle = resolve));
    const chunk: Chunk = {
      id, capture, requestedAt, rows: null, last: false, open: false, lowLsn: null, invisible: new Set(), changed: new Set(), done,
      settle: (handled) => {
        this.chunks.delete(id);
        if (this.openByCapture.get(capture.id) === chunk) this.openByCapture.delete(capture.id);
        settle(handled);
      },
    };
    this.chunks.set(id, chunk);
    return chunk;
  }

  /** L, committed at `lsn`: the chunk's window opens (false when this session holds no such chunk). */
  low(id: string, lsn: bigint): boolean {
    const chunk = this.chunks.get(id);
    if (!chunk) return false;
    chunk.open = true;
    chunk.lowLsn = lsn;
    this.openByCapture.set(chunk.capture.id, chunk);
    return true;
  }

  /** H: the chunk whose window closes, with its rows, or null. */
  high(id: string): Chunk | null {
    const chunk = this.chunks.get(id);
    if (!chunk || !chunk.open || chunk.rows === null) {
      chunk?.settle(false);
      return null;
    }
    return chunk;
  }

  /** A change of `capture`'s table with key `key` was seen: inside a window, that row's read is dropped. */
  observe(captureId: string, key: string): void {
    this.openByCapture.get(captureId)?.changed.add(key);
  }

  /** The session ends: every chunk is dropped. */
  clear(): void {
    for (const chunk of [...this.chunks.values()]) chunk.settle(false);
  }
}
