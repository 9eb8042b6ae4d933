/**
 * What the latency phases of bench:consumer and bench:bridge share: p50 /
 * p99 / max of a sample, the split of each event's latency at the moment it
 * became readable in tributary.events (the commit time of the relay's batch
 * transaction, with track_commit_timestamp on), and the check that every
 * partition's offsets came through dense.
 */
import type { Sql } from "postgres";
import { percentile } from "./lag-probe.ts";

export type Triple = readonly [number, number, number];

/** p50, p99, max (sorts `values`). */
export function summary(values: number[]): Triple {
  values.sort((a, b) => a - b);
  return [percentile(values, 50), percentile(values, 99), values.at(-1) ?? Number.NaN];
}

/**
 * For events seen at `atMs` (epoch ms) further down the line: commit →
 * readable (the relay's share) and readable → `atMs` (the next hop's), or
 * null without track_commit_timestamp.
 */
export async function splitAtReadable(
  sql: Sql,
  stream: string,
  window: ReadonlyArray<{ readonly partition: number; readonly offset: number; readonly atMs: number }>,
): Promise<{ relay: Triple; next: Triple } | null> {
  const [setting] = await sql<{ on: boolean }[]>`select current_setting('track_commit_timestamp')::bool as on`;
  if (!setting!.on) return null;
  const rows = await sql<{ partition: number; offset: string; relay_ms: number; readable_ms: number }[]>`
    select partition, "offset"::text as "offset",
           extract(epoch from pg_xact_commit_timestamp(xmin) - committed_at)::float8 * 1000 as relay_ms,
           extract(epoch from pg_xact_commit_timestamp(xmin))::float8 * 1000 as readable_ms
      from tributary.events where stream = ${stream}`;
  const readable = new Map(rows.map((r) => [`${r.partition}/${r.offset}`, r]));
  const relay: number[] = [];
  const next: number[] = [];
  for (const e of window) {
    const row = readable.get(`${e.partition}/${e.offset}`)!;
    relay.push(row.relay_ms);
    next.push(e.atMs - row.readable_ms);
  }
  return { relay: summary(relay), next: summary(next) };
}

/**
 * Every partition's offsets are 0, 1, 2, … (the stream is fresh): nothing
 * skipped; with `inOrder`, as they came, so nothing reordered either.
 */
export function assertDense(
  items: ReadonlyArray<{ readonly partition: number; readonly offset: number }>,
  options: { readonly inOrder: boolean; readonly what: string },
): void {
  const byPartition = new Map<number, number[]>();
  for (const item of items) {
    const list = byPartition.get(item.partition) ?? [];
    list.push(item.offset);
    byPartition.set(item.partition, list);
  }
  for (const [partition, offsets] of byPartition) {
    if (!options.inOrder) offsets.sort((a, b) => a - b);
    offsets.forEach((offset, i) => {
      if (offset !== i) {
        throw new Error(`${options.what} ${partition}: offset ${offset} at position ${i}: an event was ${options.inOrder ? "skipped or reordered" : "skipped"}`);
      }
    });
  }
}

/** Events and the largest latency per second of commit time, "n/max n/max …" from `windowStart` (epoch ms). */
export function perSecondText<E extends { readonly committedMs: number }>(window: readonly E[], windowStart: number, latency: (e: E) => number): string {
  const perSecond = new Map<number, [number, number]>();
  for (const e of window) {
    const second = Math.floor((e.committedMs - windowStart) / 1000);
    const [n, max] = perSecond.get(second) ?? [0, 0];
    perSecond.set(second, [n + 1, Math.max(max, latency(e))]);
  }
  return [...perSecond].sort(([a], [b]) => a - b).map(([, [n, max]]) => `${n}/${max}`).join(" ");
}
