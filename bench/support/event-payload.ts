/**
 * Benchmark events: four streams of 8 partitions, 10,000 keys, ~200-byte
 * JSON data and a W3C traceparent header. Built as JSON text so the driver
 * spends as little CPU as possible (it shares the machine with the server).
 */
export const BENCH_STREAMS = ["orders", "payments", "shipments", "invoices"] as const;
export const BENCH_PARTITIONS = 8;
export const EVENT_TYPE = "OrderPlaced";

export interface BenchEvent {
  readonly stream: string;
  readonly key: string;
  readonly type: string;
  /** JSON text, ~200 bytes. */
  readonly data: string;
  /** JSON text. */
  readonly headers: string;
}

const hex = (n: number, width: number) => (n >>> 0).toString(16).padStart(width, "0").slice(-width);

/** Deterministic, varied, ~200 bytes of JSON (jsonb's text form adds spaces: ~225 bytes). */
export function eventData(i: number): string {
  const customer = (i * 7919) % 100_000;
  const data = {
    orderId: `o-${i.toString().padStart(9, "0")}`,
    customer: { id: `c-${customer}`, tier: customer % 3 === 0 ? "gold" : "standard" },
    items: [
      { sku: `SKU-${(i * 31) % 10_000}`, qty: 1 + (i % 4), price: ((i % 9_000) + 99) / 100 },
      { sku: `SKU-${(i * 17) % 10_000}`, qty: 1, price: 5.5 },
    ],
    placedAt: "2026-11-22T04:22:07.172Z",
  };
  return JSON.stringify(data);
}

export function eventHeaders(i: number): string {
  return `{"traceparent":"00-${hex(i, 8)}${hex(i * 2654435761, 8)}0000000000000000-${hex(i * 40503, 8)}00000000-01"}`;
}

export function benchEvent(i: number, stream: string = BENCH_STREAMS[i % BENCH_STREAMS.length]!): BenchEvent {
  return { stream, key: `k-${(i * 2_654_435_761) % 10_000}`, type: EVENT_TYPE, data: eventData(i), headers: eventHeaders(i) };
}
