/**
 * What a stretch of WAL is made of, per resource manager (pg_walinspect's
 * pg_get_wal_stats, PostgreSQL 15+): heap, btree, logical messages, commit
 * records, full-page images. Optional: null when the extension is missing.
 */
import type { Sql } from "postgres";

export async function enableWalInspect(sql: Sql): Promise<boolean> {
  try {
    await sql`create extension if not exists pg_walinspect`;
    return true;
  } catch {
    return false;
  }
}

export interface WalShare {
  readonly resourceManager: string;
  /** Record bytes + full-page-image bytes. */
  readonly bytes: number;
  readonly fpiBytes: number;
}

export async function walComposition(sql: Sql, from: string, to: string): Promise<WalShare[]> {
  const rows = await sql<{ resource_manager: string; combined: string; fpi: string }[]>`
    select "resource_manager/record_type" as resource_manager, combined_size::text as combined, fpi_size::text as fpi
      from pg_get_wal_stats(${from}::pg_lsn, ${to}::pg_lsn, false)
     where combined_size > 0
     order by combined_size desc`;
  return rows.map((r) => ({ resourceManager: r.resource_manager, bytes: Number(r.combined), fpiBytes: Number(r.fpi) }));
}

/** "Heap 260, Btree 70, Transaction 35 (FPI 0)" in bytes per event, the biggest first. */
export function describeComposition(shares: readonly WalShare[], events: number, top = 4): string {
  const perEvent = (b: number) => Math.round(b / events);
  const shown = shares.slice(0, top).map((s) => `${s.resourceManager} ${perEvent(s.bytes)}`);
  const rest = shares.slice(top).reduce((sum, s) => sum + s.bytes, 0);
  if (rest > 0) shown.push(`other ${perEvent(rest)}`);
  const fpi = shares.reduce((sum, s) => sum + s.fpiBytes, 0);
  return `${shown.join(", ")} (of which FPI ${perEvent(fpi)})`;
}
