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
 * Bounded (invariant 6): at most MAX_TRANSACTIONS transactions and MAX_KEYS
 * keys; the oldest go first, and a transaction with more keys than fit
 * keeps none (a chunk it touches is then read again).
 */
import type { Lsn } from "@tributary/wal";

const MAX_TRANSACTIONS = 10_000;
const MAX_KEYS = 100_000;

export interface RecentCommit {
  readonly commitLsn: Lsn;
  /** Keys changed per capture id; null when they were too many to keep. */
  keys: Map<string, Set<string>> | null;
  readonly captures: Set<string>;
  keyCount: number;
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
  private keyCount = 0;

  /** A change of `captureId`'s table with `key`, in transaction `xid`. */
  touch(xid: number, commitLsn: Lsn, captureId: string, key: string): void {
    let commit = this.commits.get(xid);
    if (commit === undefined || commit.commitLsn !== commitLsn) {
      if (commit !== undefined) this.forget(xid, commit);
      commit = { commitLsn, keys: new Map(), captures: new Set(), keyCount: 0 };
      this.commits.set(xid, commit);
      this.order.push({ xid, commit });
      if (this.commits.size > MAX_TRANSACTIONS) this.evictOldest();
    }
    commit.captures.add(captureId);
    if (commit.keys === null) return;
    let keys = commit.keys.get(captureId);
    if (keys === undefined) commit.keys.set(captureId, (keys = new Set()));
    if (keys.has(key)) return;
    if (commit.keyCount >= MAX_KEYS) {
      // Too many for one transaction: it keeps none.
      this.keyCount -= commit.keyCount;
      commit.keyCount = 0;
      commit.keys = null;
      return;
    }
    keys.add(key);
    commit.keyCount++;
    this.keyCount++;
    // Older transactions make room for this one's keys.
    while (this.keyCount > MAX_KEYS && this.evictOldest(commit));
  }

  get(xid: number): RecentCommit | undefined {
    return this.commits.get(xid);
  }

  /** Forgets the oldest commit still kept, unless it is `keep`; false when none was forgotten. */
  private evictOldest(keep?: RecentCommit): boolean {
    while (this.head < this.order.length) {
      const { xid, commit } = this.order[this.head]!;
      if (this.commits.get(xid) !== commit) {
        this.head++; // forgotten already (its xid came again with another commit)
        continue;
      }
      if (commit === keep) return false;
      this.head++;
      this.forget(xid, commit);
      this.compact();
      return true;
    }
    return false;
  }

  private forget(xid: number, commit: RecentCommit): void {
    this.keyCount -= commit.keyCount;
    this.commits.delete(xid);
  }

  /** Drops the queue's forgotten front once it is half of the queue. */
  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }
}
