/**
 * The transactions the relay decoded lately that changed captured tables,
 * by xid: their commit LSN and the keys they changed (chunks.ts).
 *
 * Why: PostgreSQL flushes a commit record, marks the transaction committed,
 * and only then makes it visible (it leaves the proc array; with a
 * synchronous standby, only once the standby answered). Logical decoding
 * hands the changes out as soon as the record is flushed. A chunk's read
 * can therefore miss a transaction whose commit lies before the chunk's low
 * watermark: its change is before the window, so nothing marks the row, and
 * the read would be stale (pg_xact_status cannot tell: it says "in
 * progress" until the transaction is visible). So the chunk carries the xids
 * its read's snapshot did not see, and at the high watermark those of them
 * that committed before the low watermark have their keys marked, as if
 * changed in the window — or, when their keys were not kept, the chunk is
 * dropped and read again.
 *
 * Bounded (invariant 6): at most MAX_TRANSACTIONS transactions, and their
 * keys in a ring of KEY_BYTES bytes. Every captured change passes through
 * here, and almost no key is ever read back (only at a chunk's high
 * watermark, for the few transactions its read did not see), so the keys
 * are kept as bytes, not as strings in Sets: a hundred thousand retained
 * strings that every change replaces would be garbage the collector copies
 * and marks over and over (40% of the relay's GC time in bench:cdc). The
 * ring is written in records `capture id 0x01 key 0x00`; a record that does
 * not fit before the ring's end starts at its beginning (0xFF, never a
 * UTF-8 byte, marks the skipped tail). A transaction's records are
 * contiguous (the relay decodes one transaction at a time); once the ring
 * has come round over any of them, that transaction's keys are not kept.
 */
import type { Lsn } from "@tributary/wal";

const MAX_TRANSACTIONS = 10_000;
const KEY_BYTES = 4 << 20;
const SEPARATOR = 0x01;
const END = 0x00;
const SKIPPED = 0xff;

export interface RecentCommit {
  readonly commitLsn: Lsn;
  /** The captures whose tables it changed (usually one). */
  readonly captures: string[];
  /** Its records' range in the ring, as absolute offsets (bytes ever written). */
  from: number;
  to: number;
  /** False once its records could not stay contiguous or whole. */
  kept: boolean;
}

export class RecentCommits {
  private readonly commits = new Map<number, RecentCommit>();
  /**
   * The commits in the order they came, oldest at `head`: the oldest is found
   * here, not by iterating the Map, whose iterator walks over every entry
   * deleted before it until the Map rehashes (O(n) per eviction).
   */
  private order: Array<{ xid: number; commit: RecentCommit }> = [];
  private head = 0;
  private readonly ring: Buffer;
  /** Bytes ever written to the ring (with skipped tails): the next record's absolute offset. */
  private written = 0;
  /** The commit whose records are at the ring's end (the only one that may add more), and its xid. */
  private last: RecentCommit | undefined;
  private lastXid = -1;

  constructor(private readonly ringBytes: number = KEY_BYTES) {
    this.ring = Buffer.allocUnsafe(ringBytes);
  }

  /** A change of `captureId`'s table with `key`, in transaction `xid`. */
  touch(xid: number, commitLsn: Lsn, captureId: string, key: string): void {
    let commit = this.last;
    if (commit === undefined || this.lastXid !== xid || commit.commitLsn !== commitLsn) {
      commit = this.commits.get(xid);
      if (commit === undefined || commit.commitLsn !== commitLsn) {
        commit = { commitLsn, captures: [], from: this.written, to: this.written, kept: true };
        this.commits.set(xid, commit);
        this.order.push({ xid, commit });
        if (this.commits.size > MAX_TRANSACTIONS) this.evictOldest();
      } else {
        commit.kept = false; // others' records came after its own: its range would hold them
      }
      this.last = commit;
      this.lastXid = xid;
    }
    if (!commit.captures.includes(captureId)) commit.captures.push(captureId);
    if (commit.kept) this.append(commit, captureId, key);
  }

  get(xid: number): RecentCommit | undefined {
    return this.commits.get(xid);
  }

  /** The keys `xid` changed in `captureId`'s table, or null when they were not kept (or it is not kept at all). */
  keys(xid: number, captureId: string): Set<string> | null {
    const commit = this.commits.get(xid);
    if (commit === undefined || !commit.kept || commit.from < this.written - this.ringBytes) return null;
    const keys = new Set<string>();
    const ring = this.ring;
    let at = commit.from;
    while (at < commit.to) {
      const start = at % this.ringBytes;
      if (ring[start] === SKIPPED) {
        at += this.ringBytes - start;
        continue;
      }
      const separator = ring.indexOf(SEPARATOR, start);
      const end = ring.indexOf(END, separator + 1);
      if (ring.toString("latin1", start, separator) === captureId) keys.add(ring.toString("utf8", separator + 1, end));
      at += end + 1 - start;
    }
    return keys;
  }

  /** Writes the record at the ring's end (a UTF-16 unit is at most 3 UTF-8 bytes: that much room is made). */
  private append(commit: RecentCommit, captureId: string, key: string): void {
    const room = captureId.length + key.length * 3 + 2;
    if (room > this.ringBytes) {
      commit.kept = false;
      return;
    }
    let start = this.written % this.ringBytes;
    if (start + room > this.ringBytes) {
      this.ring[start] = SKIPPED;
      this.written += this.ringBytes - start;
      start = 0;
    }
    const ring = this.ring;
    let at = start + ring.write(captureId, start, "latin1");
    ring[at++] = SEPARATOR;
    at += ring.write(key, at, "utf8");
    ring[at++] = END;
    this.written += at - start;
    commit.to = this.written;
  }

  /** Forgets the oldest commit still kept. */
  private evictOldest(): void {
    while (this.head < this.order.length) {
      const { xid, commit } = this.order[this.head++]!;
      if (this.commits.get(xid) !== commit) continue; // forgotten already (its xid came again with another commit)
      this.commits.delete(xid);
      this.compact();
      return;
    }
  }

  /** Drops the queue's forgotten front once it is half of the queue. */
  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }
}
