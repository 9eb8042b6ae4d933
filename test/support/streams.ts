/** Reading the stream table back, and waiting for the relay to catch up. */
import { createHash, createHmac, randomUUID } from "node:crypto";
import type { Sql } from "postgres";

export interface StoredEvent {
  stream: string;
  partition: number;
  offset: number;
  id: string;
  key: string;
  type: string;
  data: unknown;
  headers: Record<string, unknown>;
  committed_at: Date;
}

export async function readAll(sql: Sql, stream?: string): Promise<StoredEvent[]> {
  const rows = await sql<StoredEvent[]>`
    select stream, partition, "offset"::int as "offset", id::text, key, type, data, headers, committed_at
      from tributary.events
     where ${stream === undefined ? sql`true` : sql`stream = ${stream}`}
     order by stream, partition, "offset"`;
  return [...rows];
}

export async function countEvents(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: string }[]>`select count(*)::text as n from tributary.events`;
  return Number(row!.n);
}

/** Polls until the stream holds `expected` events (or fails after `timeoutMs`). */
export async function waitForCount(sql: Sql, expected: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let n = 0;
  while (Date.now() < deadline) {
    n = await countEvents(sql);
    if (n >= expected) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${expected} events in the stream; have ${n}`);
}

/** Offsets of every (stream, partition) are 0..n-1 with no gap and no reuse. */
export function assertDense(events: StoredEvent[]): void {
  const next = new Map<string, number>();
  for (const e of events) {
    const k = `${e.stream}/${e.partition}`;
    const expected = next.get(k) ?? 0;
    if (e.offset !== expected) throw new Error(`offsets of ${k} not dense: expected ${expected}, found ${e.offset}`);
    next.set(k, expected + 1);
  }
}

/**
 * Emits a message exactly as tributary.append() signs it, bypassing append's
 * limits: what a stream may already hold from before a limit was introduced or
 * lowered. Needs the superuser (it reads tributary.signing_keys).
 */
export async function emitSignedEvent(sql: Sql, event: { stream: string; key: string; partitions: number; type: string; dataText: string }): Promise<string> {
  const [key] = await sql<{ id: number; secret: Buffer }[]>`select id, secret from tributary.signing_keys order by id desc limit 1`;
  const id = randomUUID();
  const payload = `${JSON.stringify([event.stream, event.key, event.partitions, id, event.type])}\n{}\n${event.dataText}`;
  const mac = createHmac("sha256", key!.secret).update(payload).digest("hex");
  await sql`select pg_logical_emit_message(true, 'tributary', ${`tributary-v1 ${key!.id} ${mac}\n${payload}`}::text)`;
  return id;
}

/**
 * Emits `count` messages signed exactly as tributary.append() signs them, in
 * one statement (one transaction): event i (from `first`) has key
 * 'key-' || (i % 5000) and data {"i": i, "pad": 160 × "x"}, as the memory and
 * backlog tests' appends had. Set-based, without append's per-call checks,
 * it writes them about 6× faster than `select tributary.append(…) from
 * generate_series(…)`: what the relay reads is the same. The stream is
 * created (8 partitions) if missing. Needs the superuser (it reads
 * tributary.signing_keys).
 */
export async function emitSignedEvents(sql: Sql, stream: string, count: number, first = 1): Promise<void> {
  const [key] = await sql<{ id: number; secret: Buffer }[]>`select id, secret from tributary.signing_keys order by id desc limit 1`;
  const [created] = await sql<{ partitions: number }[]>`select tributary.stream_partitions(${stream}) as partitions`;
  const partitions = created!.partitions;
  // HMAC-SHA256 as append computes it (migration 0006): sha256(outer pad || sha256(inner pad || payload)).
  const block = Buffer.alloc(64);
  (key!.secret.length > 64 ? createHash("sha256").update(key!.secret).digest() : key!.secret).copy(block);
  const inner = Buffer.from(block.map((b) => b ^ 0x36));
  const outer = Buffer.from(block.map((b) => b ^ 0x5c));
  await sql`
    select count(pg_logical_emit_message(true, 'tributary',
             'tributary-v1 ' || ${key!.id}::int || ' '
               || encode(sha256(${outer}::bytea || sha256(${inner}::bytea || convert_to(m.payload, 'UTF8'))), 'hex')
               || E'\n' || m.payload))
      from generate_series(${first}::int, ${first + count - 1}::int) g,
           lateral (select json_build_array(${stream}::text, 'key-' || (g % 5000), ${partitions}::int, gen_random_uuid(), 'Generated')::text
                             || E'\n{}\n' || jsonb_build_object('i', g, 'pad', repeat('x', 160))::text as payload) m`;
}
