/**
 * The demo: appends sample order events at a steady rate, each in its own
 * transaction, and redraws one status line a second (appended, relayed, lag).
 *
 * Each order gets OrderPlaced, OrderPaid, OrderShipped under key order-N, N
 * counting up. A restart continues above the highest order-N the stream
 * holds, so no order gets a second history. What the last session appended
 * may still be in the WAL, not yet in tributary.events: before it reads that
 * number the demo waits until the relay's checkpoint passes the WAL position
 * of its own start, which covers every transaction committed before it.
 */
import type { Sql } from "postgres";
import { append, transaction } from "@tributary/client";
import { formatBytes, readStatus } from "./status-query.ts";
import { nextDemoOrder, relayPassed } from "./demo-orders.ts";

const types = ["OrderPlaced", "OrderPaid", "OrderShipped"] as const;
const DEMO_STREAM = "orders";

export interface DemoOptions {
  readonly ratePerSecond: number;
  /** The relay's slot, whose checkpoint says what is in tributary.events. */
  readonly slotName: string;
}

export function startDemo(sql: Sql, options: DemoOptions): () => Promise<void> {
  const { ratePerSecond } = options;
  let appended = 0;
  let stopped = false;
  let firstOrder = 0;
  const tty = process.stderr.isTTY;

  const produce = async () => {
    const started = Date.now();
    while (!stopped) {
      const due = Math.floor(((Date.now() - started) / 1000) * ratePerSecond);
      while (appended < due && !stopped) {
        const n = firstOrder * 3 + appended++;
        const order = `order-${Math.floor(n / 3)}`;
        await transaction(sql, (tx) => append(tx, {
          stream: DEMO_STREAM,
          key: order,
          type: types[n % 3]!,
          data: { order, customer: `customer-${n % 97}`, total: Math.round((n * 7.31) % 500 * 100) / 100, at: new Date().toISOString() },
          headers: { source: "tributary-demo" },
        }));
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  const report = async () => {
    const status = await readStatus(sql);
    const relayed = status.streams.find((s) => s.stream === DEMO_STREAM)?.events ?? 0;
    const relay = status.relays[0];
    const line = `appended ${appended} · relayed ${relayed} (this session ${Math.max(0, relayed - baseline)}) · relay lag ${formatBytes(relay?.lagBytes ?? null)} of WAL`;
    if (tty) process.stderr.write(`\r\x1b[2K${line}`);
    else process.stderr.write(line + "\n");
  };

  let baseline = 0;
  const ready = (async () => {
    const [start] = await sql<{ lsn: string }[]>`select pg_current_wal_lsn()::text as lsn`;
    while (!stopped && !(await relayPassed(sql, options.slotName, start!.lsn))) await new Promise((r) => setTimeout(r, 50));
    firstOrder = await nextDemoOrder(sql, DEMO_STREAM);
    const status = await readStatus(sql);
    baseline = status.streams.find((x) => x.stream === DEMO_STREAM)?.events ?? 0;
    console.error(firstOrder === 0 ? "[demo] appending orders from order-0" : `[demo] the stream holds orders up to order-${firstOrder - 1}: appending from order-${firstOrder}`);
  })();
  let timer: NodeJS.Timeout | undefined;
  const producing = ready.then(() => {
    if (!stopped) timer = setInterval(() => void report().catch(() => undefined), 1000);
    return produce();
  });
  const failed = producing.catch((error: unknown) => {
    if (!stopped) console.error(`${tty ? "\n" : ""}[demo] stopped appending: ${(error as Error)?.message ?? error}`);
  });
  return async () => {
    stopped = true;
    clearInterval(timer);
    await failed;
    if (tty) process.stderr.write("\n");
  };
}
