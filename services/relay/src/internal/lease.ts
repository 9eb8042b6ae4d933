/**
 * The active relay's lease (tributary.relay_leases; docs/ARCHITECTURE.md
 * invariants 5 and 13).
 *
 * The advisory lock says that a relay's connection is open, not that the
 * relay is alive: a SIGSTOPped or hung process keeps its lock for as long as
 * its connection stays open. So the active relay also renews a lease, by the
 * database's clock, while it makes progress (its event loop runs and no batch
 * write has been stuck for half the takeover time). A standby that cannot take
 * the lock and finds the lease expired terminates the holder's lock and
 * writer backends and the slot's walsender, which frees the lock and the slot;
 * it then takes the lock on its next poll. The stale relay, should it wake,
 * finds its connections gone, and a write it still attempts fails the
 * checkpoint's compare-and-set (fenced).
 *
 * Relays of one slot must log in as the same role (or hold pg_signal_backend):
 * pg_terminate_backend needs it.
 */
import type { Sql } from "postgres";

/** Records this relay as the holder, on its lock connection (whose pid is the lock's). */
export async function takeLease(lockConn: Sql, slotName: string, relayId: string, writerPid: number, takeoverMs: number): Promise<void> {
  await lockConn`
    insert into tributary.relay_leases (slot_name, relay_id, lock_pid, writer_pid, expires_at)
    values (${slotName}, ${relayId}, pg_backend_pid(), ${writerPid}, now() + ${takeoverMs} * interval '1 millisecond')
    on conflict (slot_name) do update
      set relay_id = excluded.relay_id, lock_pid = excluded.lock_pid, writer_pid = excluded.writer_pid,
          expires_at = excluded.expires_at, renewed_at = now()`;
}

/** Extends the lease; false when another relay holds it now (this one was taken over). */
export async function renewLease(lockConn: Sql, slotName: string, relayId: string, takeoverMs: number): Promise<boolean> {
  const rows = await lockConn`
    update tributary.relay_leases
       set expires_at = now() + ${takeoverMs} * interval '1 millisecond', renewed_at = now()
     where slot_name = ${slotName} and relay_id = ${relayId}
     returning 1`;
  return rows.length === 1;
}

export interface Takeover {
  readonly relayId: string;
  readonly silentSeconds: number;
  readonly terminated: number;
}

/**
 * When the lease of `slotName` expired, terminates its holder's backends and
 * the slot's walsender; null when the lease is live (or there is none).
 */
export async function takeOverExpired(sql: Sql, slotName: string): Promise<Takeover | null> {
  const [lease] = await sql<{ relay_id: string; silent_seconds: number; terminated: number }[]>`
    with expired as (
      select relay_id, lock_pid, writer_pid, extract(epoch from now() - renewed_at)::float8 as silent_seconds
        from tributary.relay_leases
       where slot_name = ${slotName} and expires_at < now()
    ), holders as (
      select lock_pid as pid from expired
      union select writer_pid from expired
      union select active_pid from pg_replication_slots, expired
       where slot_name = ${slotName} and active_pid is not null
    )
    select e.relay_id, e.silent_seconds,
           (select count(*) filter (where pg_terminate_backend(a.pid))::int
              from pg_stat_activity a join holders h on h.pid = a.pid
             where a.pid <> pg_backend_pid() and a.application_name like 'tributary-relay%') as terminated
      from expired e`;
  if (!lease) return null;
  return { relayId: lease.relay_id, silentSeconds: lease.silent_seconds, terminated: lease.terminated };
}
