/**
 * Keeps tributary.queue_messages small under churn: workers VACUUM it
 * themselves once enough dead rows piled up.
 *
 * Every message leaves two dead row versions behind (its claim's old version
 * and, once acked, itself). Autovacuum visits a database only once per
 * `autovacuum_naptime` (60 s by default, server-wide): at 10,000 messages/s
 * the table grew to 750 MB before its first visit (bench:queue, churn), and
 * claims scanned the dead entries at the head of the claim index. A VACUUM
 * of the small live table takes milliseconds, so the workers run one as soon
 * as `deadRows` (10,000, plus a tenth of the live rows) dead rows are
 * reported: the table stays at a few MB.
 *
 * One VACUUM at a time across all workers of the database (a session
 * advisory lock, tried, never waited for), on a session of its own
 * (openSession: a connection beside the pool's, ended after the VACUUM, which
 * releases the lock; docs/ARCHITECTURE.md, Known traps). A role that may not vacuum the
 * table (not its owner; on PostgreSQL 17+, no MAINTAIN privilege) leaves it
 * to autovacuum, and the worker says so once.
 */
import type { Sql } from "postgres";
import { QUEUE_VACUUM_LOCK } from "@tributary/core";
import { withSession } from "./connection/session.ts";

export interface QueueVacuumOptions {
  /** How often to look at the table's dead rows (default 2,000 ms). */
  readonly checkEveryMs?: number;
  /** Vacuum once this many dead rows, plus a tenth of the live ones, are reported (default 10,000). */
  readonly deadRows?: number;
  readonly log: (message: string) => void;
}

export interface QueueVacuum {
  /** Vacuums run by this worker. */
  readonly runs: () => number;
  stop(): Promise<void>;
}

export async function startQueueVacuum(sql: Sql, options: QueueVacuumOptions): Promise<QueueVacuum> {
  const checkEveryMs = options.checkEveryMs ?? 2_000;
  const deadRows = options.deadRows ?? 10_000;
  const [allowed] = await sql<{ may: boolean }[]>`
    select case when current_setting('server_version_num')::int >= 170000
                then has_table_privilege('tributary.queue_messages', 'MAINTAIN')
                else pg_has_role(c.relowner, 'MEMBER') or (select rolsuper from pg_roles where rolname = current_user) end as may
      from pg_class c where c.oid = 'tributary.queue_messages'::regclass`;
  let runs = 0;
  if (!allowed?.may) {
    options.log("this role may not VACUUM tributary.queue_messages (not its owner): under churn the table grows until autovacuum " +
      "visits it (autovacuum_naptime); run the workers as the table's owner, or lower autovacuum_naptime");
    return { runs: () => runs, stop: async () => {} };
  }
  let stopped = false;
  let running: Promise<void> | null = null;
  const check = async () => {
    const [stats] = await sql<{ dead: string; live: string }[]>`
      select n_dead_tup::text as dead, n_live_tup::text as live from pg_stat_user_tables where relid = 'tributary.queue_messages'::regclass`;
    if (!stats || Number(stats.dead) < deadRows + Number(stats.live) / 10) return;
    await withSession(sql, async (session) => {
      const [lock] = await session<{ got: boolean }[]>`select pg_try_advisory_lock(${QUEUE_VACUUM_LOCK}, 0) as got`;
      if (!lock?.got) return; // another worker is at it
      await session.unsafe("vacuum (skip_locked) tributary.queue_messages");
      runs++;
    });
  };
  const timer = setInterval(() => {
    if (stopped || running) return;
    running = check()
      .catch((error: unknown) => options.log(`vacuum of tributary.queue_messages failed (${(error as Error).message}); trying again later`))
      .finally(() => {
        running = null;
      });
  }, checkEveryMs);
  timer.unref();
  return {
    runs: () => runs,
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
