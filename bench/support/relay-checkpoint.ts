/** The relay's checkpoint version: every batch write bumps it by one, so a difference counts batches. */
import type { Sql } from "postgres";

export async function checkpointVersion(sql: Sql, slotName: string): Promise<number> {
  const [row] = await sql<{ version: string }[]>`select version::text from tributary.relay_checkpoints where slot_name = ${slotName}`;
  return Number(row?.version ?? 0);
}
