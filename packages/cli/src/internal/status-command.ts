import postgres from "postgres";
import { databaseUrl, databaseUrlOption, parse } from "./args.ts";
import { formatBytes, readStatus } from "./status-query.ts";

const usage = `Usage: tributary status [--database-url URL] [--json]

Streams with their partitions and event counts; each relay slot with its state,
lag (WAL bytes not yet acknowledged) and WAL retained.

  --json   one JSON object for programs`;

export async function statusCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, { ...databaseUrlOption, json: { type: "boolean" } }, usage);
  const sql = postgres(databaseUrl(values), { max: 1, onnotice: () => {} });
  try {
    const status = await readStatus(sql);
    if (values.json) {
      process.stdout.write(JSON.stringify(status) + "\n");
      return;
    }
    const lines = ["STREAM                           PARTITIONS       EVENTS"];
    for (const s of status.streams) lines.push(`${s.stream.padEnd(32)} ${String(s.partitions).padStart(10)} ${String(s.events).padStart(12)}`);
    if (status.streams.length === 0) lines.push("(no streams yet)");
    lines.push("", "RELAY SLOT        DECODER    STATE      LAG          WAL RETAINED  CHECKPOINT");
    for (const r of status.relays) {
      const state = r.walStatus === "lost" ? "LOST" : r.active ? "active" : "idle";
      lines.push(
        `${r.slot.padEnd(17)} ${r.plugin.padEnd(10)} ${state.padEnd(10)} ${formatBytes(r.lagBytes).padEnd(12)} ${formatBytes(r.walRetainedBytes).padEnd(13)} ${r.checkpointLsn} at ${r.checkpointAt}`,
      );
    }
    process.stdout.write(lines.join("\n") + "\n");
  } finally {
    await sql.end({ timeout: 1 });
  }
}
