/** Which server processes serve a client, found by application_name, for per-role CPU figures. */
import type { Sql } from "postgres";
import { processCpuSeconds } from "./cpu-accounting.ts";

export interface BackendCpu {
  readonly walsender: number;
  readonly backends: number;
}

/**
 * CPU seconds used so far by the server processes of a relay: its walsender
 * (application_name 'tributary-relay:<slot>', decoding) and its ordinary
 * backends (application_name 'tributary-relay', writing batches). They were
 * started by this relay, so the totals are this relay's.
 */
export async function relayServerCpu(sql: Sql, slotName: string): Promise<BackendCpu> {
  const rows = await sql<{ pid: number; backend_type: string }[]>`
    select pid, backend_type from pg_stat_activity
     where application_name in ('tributary-relay', ${`tributary-relay:${slotName}`})`;
  let walsender = 0;
  let backends = 0;
  for (const row of rows) {
    const cpu = processCpuSeconds(row.pid) ?? 0;
    if (row.backend_type === "walsender") walsender += cpu;
    else backends += cpu;
  }
  return { walsender, backends };
}

/** Polls the CPU of the walsender serving `applicationName` until stopped; returns the last reading. */
export function followWalsenderCpu(sql: Sql, applicationName: string, everyMs = 50): { stop(): Promise<number> } {
  let last = 0;
  let pid: number | null = null;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      if (pid === null) {
        const [row] = await sql<{ pid: number }[]>`
          select pid from pg_stat_activity where backend_type = 'walsender' and application_name = ${applicationName}`;
        pid = row?.pid ?? null;
      }
      if (pid !== null) last = processCpuSeconds(pid) ?? last;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return last;
    },
  };
}
