/**
 * The two reads the demo makes before it appends: has the relay written
 * everything committed before a WAL position, and which order number comes
 * next.
 */
import type { Sql } from "postgres";

/**
 * The relay's checkpoint is at or past `lsn`: every transaction committed
 * before it is in tributary.events, or was not an event (invariant 4: the
 * checkpoint is written with the events it covers).
 */
export async function relayPassed(sql: Sql, slotName: string, lsn: string): Promise<boolean> {
  const [row] = await sql<{ passed: boolean }[]>`
    select end_lsn >= ${lsn}::pg_lsn as passed from tributary.relay_checkpoints where slot_name = ${slotName}`;
  return row?.passed ?? false;
}

/**
 * One above the highest order-N key of the stream, whoever appended it (an
 * order-N appended by hand has a history too), or 0. Older demos restarted at
 * order-0, so the highest number can be anywhere in the stream: this reads
 * every key once, at start-up.
 */
export async function nextDemoOrder(sql: Sql, stream: string): Promise<number> {
  const [row] = await sql<{ highest: string | null }[]>`
    select max(substring(key from '^order-([0-9]{1,15})$')::bigint)::text as highest
      from tributary.events where stream = ${stream}`;
  return row?.highest == null ? 0 : Number(row.highest) + 1;
}
