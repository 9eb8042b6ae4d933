/**
 * Batch rows in PostgreSQL's COPY text format, built in one tight loop.
 * Profiling showed postgres.js's generic array serialization (escaping every
 * element of nine arrays) as the relay's largest CPU cost; most fields here
 * need no escaping at all (stream names, uuids, numbers, typical JSON), so we
 * test once and escape only when needed.
 */
import type { EventRows } from "./relay-state.ts";

const NEEDS_ESCAPE = /[\\\t\n\r]/;

/** COPY text escaping: backslash, tab, newline and carriage return. */
export function copyEscape(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return value;
  return value.replace(/[\\\t\n\r]/g, (c) => (c === "\\" ? "\\\\" : c === "\t" ? "\\t" : c === "\n" ? "\\n" : "\\r"));
}

/** µs since the Unix epoch → "2026-11-22 04:22:07.172272+00" (timestamptz input). */
export function timestampText(micros: bigint): string {
  const ms = Number(micros / 1000n);
  const fraction = (micros % 1_000_000n).toString().padStart(6, "0");
  const iso = new Date(ms).toISOString(); // 2026-11-22T04:22:07.172Z
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}.${fraction}+00`;
}

/** The rows as COPY text for columns (stream, partition, offset, id, key, type, data, headers, committed_at). */
export function toCopyText(rows: EventRows): string {
  let out = "";
  let lastMicros = "";
  let lastTimestamp = "";
  const n = rows.stream.length;
  for (let i = 0; i < n; i++) {
    const micros = rows.committedAtMicros[i]!;
    if (micros !== lastMicros) {
      lastMicros = micros;
      lastTimestamp = timestampText(BigInt(micros));
    }
    out +=
      rows.stream[i] + "\t" + rows.partition[i] + "\t" + rows.offset[i] + "\t" + rows.id[i] + "\t" +
      copyEscape(rows.key[i]!) + "\t" + copyEscape(rows.type[i]!) + "\t" +
      copyEscape(rows.data[i]!) + "\t" + copyEscape(rows.headers[i]!) + "\t" + lastTimestamp + "\n";
  }
  return out;
}
