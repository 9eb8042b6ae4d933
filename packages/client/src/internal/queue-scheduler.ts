/**
 * The cron scheduler: calls tributary.fire_schedules() when the next
 * schedule is due (at most every `maxSleepMs`, default 1 s). Run it in as
 * many processes as you like — each tick is sent once (the schedule row is
 * locked while its tick is sent and moved on) — so it can live inside every
 * worker process with no leader election.
 */
import type { Sql } from "postgres";

export interface Scheduler {
  /** Ticks sent by this scheduler so far. */
  fired(): number;
  stop(): Promise<void>;
}

export function runScheduler(sql: Sql, options: { maxSleepMs?: number; log?: (message: string) => void } = {}): Scheduler {
  const maxSleepMs = options.maxSleepMs ?? 1_000;
  const log = options.log ?? ((m: string) => console.error(`[tributary scheduler] ${m}`));
  let stopping = false;
  let fired = 0;
  let timer: NodeJS.Timeout | null = null;
  let wake: (() => void) | null = null;
  const loop = (async () => {
    while (!stopping) {
      let sleepMs = maxSleepMs;
      try {
        const [row] = await sql<{ fired: number; next_ms: number | null }[]>`
          select tributary.fire_schedules() as fired,
                 (select extract(epoch from min(next_run_at) - now()) * 1000 from tributary.queue_schedules)::float8 as next_ms`;
        fired += row!.fired;
        if (row!.next_ms !== null) sleepMs = Math.max(5, Math.min(maxSleepMs, Math.ceil(row!.next_ms) + 5));
      } catch (error) {
        log(`firing schedules failed (${(error as Error).message}); retrying`);
      }
      if (stopping) break;
      await new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, sleepMs);
      });
    }
  })();
  return {
    fired: () => fired,
    stop: async () => {
      stopping = true;
      if (timer) clearTimeout(timer);
      (wake as (() => void) | null)?.();
      await loop;
    },
  };
}
