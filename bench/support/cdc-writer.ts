/**
 * Writes bench:cdc's WAL of row changes: exactly `total` changes of one
 * table, inserts, updates and deletes (5 : 3 : 2) in transactions of several
 * sizes (each size class carries an equal share of the changes), interleaved,
 * from several connections.
 *
 * Each connection owns its own id range, so writers never wait on each
 * other's rows, and keeps its live rows contiguous, [low, high): inserts add
 * at `high`, deletes take from `low`, updates sweep a window across the live
 * rows. A transaction of n changes is its inserts, then its updates, then its
 * deletes, one statement each (a 1-change transaction is one autocommit
 * statement). While too few rows are live for an update or delete, the
 * writer inserts instead, so the total stays exact; every statement must
 * touch exactly the rows it names.
 */
import postgres from "postgres";
import { deleteRows, insertRows, updateRows, type Queries } from "./cdc-table.ts";

export interface ChangeCounts {
  inserts: number;
  updates: number;
  deletes: number;
}

export interface ChangeWriteResult extends ChangeCounts {
  readonly changes: number;
  readonly transactions: number;
  readonly seconds: number;
  /** Transactions per size class (changes per transaction → count). */
  readonly transactionsBySize: ReadonlyMap<number, number>;
}

/** One id range per writer: far apart, so no two writers ever touch one row. */
const WRITER_ID_SPAN = 1_000_000_000_000n;

/** The 1-change transactions' ops, in a cycle of 10 (5 inserts, 3 updates, 2 deletes). */
const SINGLE_OPS = ["i", "u", "i", "d", "i", "u", "i", "u", "d", "i"] as const;

/** Transaction sizes (changes per transaction) in write order: every class carries total/classes changes. */
export function planTransactions(total: number, sizes: readonly number[]): number[] {
  const share = Math.floor(total / sizes.length);
  const remaining = sizes.map((size, i) => ({ size, left: i === sizes.length - 1 ? total - share * (sizes.length - 1) : share }));
  const plan: number[] = [];
  // Round-robin by changes written, so small and large transactions alternate in the WAL.
  const written = sizes.map(() => 0);
  while (remaining.some((r) => r.left > 0)) {
    let pick = -1;
    for (let i = 0; i < remaining.length; i++) if (remaining[i]!.left > 0 && (pick < 0 || written[i]! < written[pick]!)) pick = i;
    const r = remaining[pick]!;
    const n = Math.min(r.size, r.left);
    plan.push(n);
    r.left -= n;
    written[pick]! += n;
  }
  return plan;
}

class WriterRows {
  private low: bigint;
  private high: bigint;
  private sweep: bigint;
  private singles = 0;

  constructor(writer: number) {
    this.low = this.high = this.sweep = BigInt(writer + 1) * WRITER_ID_SPAN;
  }

  private get live(): number {
    return Number(this.high - this.low);
  }

  /** How a transaction of n changes splits into inserts, updates and deletes, given the live rows. */
  split(n: number): ChangeCounts {
    if (n === 1) {
      const op = SINGLE_OPS[this.singles++ % SINGLE_OPS.length];
      if (op === "u" && this.live >= 1) return { inserts: 0, updates: 1, deletes: 0 };
      if (op === "d" && this.live >= 2) return { inserts: 0, updates: 0, deletes: 1 };
      return { inserts: 1, updates: 0, deletes: 0 };
    }
    const wantUpdates = Math.round(n * 0.3);
    const wantDeletes = Math.round(n * 0.2);
    let inserts = n - wantUpdates - wantDeletes;
    // The updates and deletes need live rows once this transaction's inserts are in.
    const updates = this.live + inserts >= wantUpdates ? wantUpdates : 0;
    const deletes = this.live + inserts >= wantDeletes + 1 ? wantDeletes : 0;
    inserts = n - updates - deletes;
    return { inserts, updates, deletes };
  }

  async write(sql: Queries, table: string, counts: ChangeCounts): Promise<void> {
    const touched = (op: string, want: number, got: number) => {
      if (got !== want) throw new Error(`bench:cdc writer: ${op} touched ${got} rows, expected ${want}`);
    };
    if (counts.inserts > 0) {
      const from = this.high;
      this.high += BigInt(counts.inserts);
      touched("insert", counts.inserts, await insertRows(sql, table, from, this.high));
    }
    if (counts.updates > 0) {
      const n = BigInt(counts.updates);
      if (this.sweep < this.low || this.sweep + n > this.high) this.sweep = this.low;
      const from = this.sweep;
      this.sweep += n;
      touched("update", counts.updates, await updateRows(sql, table, from, this.sweep));
    }
    if (counts.deletes > 0) {
      const from = this.low;
      this.low += BigInt(counts.deletes);
      touched("delete", counts.deletes, await deleteRows(sql, table, from, this.low));
    }
  }
}

export async function writeChanges(
  url: string,
  table: string,
  total: number,
  sizes: readonly number[],
  writers: number,
  onProgress?: (changes: number) => void,
): Promise<ChangeWriteResult> {
  const sql = postgres(url, { max: writers, onnotice: () => {} });
  const plan = planTransactions(total, sizes);
  const transactionsBySize = new Map<number, number>();
  for (const n of plan) transactionsBySize.set(n, (transactionsBySize.get(n) ?? 0) + 1);
  const counts: ChangeCounts = { inserts: 0, updates: 0, deletes: 0 };
  let next = 0;
  let written = 0;
  const started = performance.now();
  const progress = setInterval(() => onProgress?.(written), 2000);
  try {
    await Promise.all(
      Array.from({ length: writers }, async (_, writer) => {
        const rows = new WriterRows(writer);
        for (let j = next++; j < plan.length; j = next++) {
          const n = plan[j]!;
          const split = rows.split(n);
          if (n === 1) await rows.write(sql, table, split);
          else await sql.begin((tx) => rows.write(tx, table, split));
          counts.inserts += split.inserts;
          counts.updates += split.updates;
          counts.deletes += split.deletes;
          written += n;
        }
      }),
    );
  } finally {
    clearInterval(progress);
    await sql.end({ timeout: 5 });
  }
  return { ...counts, changes: written, transactions: plan.length, seconds: (performance.now() - started) / 1000, transactionsBySize };
}
