/**
 * The demo: appends sample order events at a steady rate, each in its own
 * transaction, and redraws one status line a second (appended, relayed, lag).
 */
import type { Sql } from "postgres";
import { append, transaction } from "@tributary/client";
import { formatBytes, readStatus } from "./status-query.ts";

const types = ["OrderPlaced", "OrderPaid", "OrderShipped"] as const;

export function startDemo(sql: Sql, ratePerSecond: number): () => Promise<void> {
  let appended = 0;
  let stopped = false;
  const started = Date.now();
  const tty = process.stderr.isTTY;

  const produce = async () => {
    while (!stopped) {
      const due = Math.floor(((Date.now() - started) / 1000) * ratePerSecond);
      while (appended < due && !stopped) {
        const n = appended++;
        const order = `order-${Math.floor(n / 3)}`;
        await transaction(sql, (tx) => append(tx, {
          stream: "orders",
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
    const relayed = status.streams.find((s) => s.stream === "orders")?.events ?? 0;
    const relay = status.relays[0];
    const line = `appended ${appended} · relayed ${relayed} (this session ${Math.max(0, relayed - baseline)}) · relay lag ${formatBytes(relay?.lagBytes ?? null)} of WAL`;
    if (tty) process.stderr.write(`\r\x1b[2K${line}`);
    else process.stderr.write(line + "\n");
  };

  let baseline = 0;
  const ready = readStatus(sql).then((s) => {
    baseline = s.streams.find((x) => x.stream === "orders")?.events ?? 0;
  });
  const producing = ready.then(produce);
  const timer = setInterval(() => void report().catch(() => undefined), 1000);
  return async () => {
    stopped = true;
    clearInterval(timer);
    await producing.catch(() => undefined);
    if (tty) process.stderr.write("\n");
  };
}
