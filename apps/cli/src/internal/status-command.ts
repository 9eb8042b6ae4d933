import { connectPostgres } from "@tributary/client";
import { alarmOptions, alarmSettings, alarmUsage } from "./alarm-options.ts";
import { databaseUrl, databaseUrlOption, parse } from "./args.ts";
import { snapshotCell } from "./capture-progress.ts";
import { formatBytes, formatRate, formatSeconds, readStatus, type Status, type StreamStatus } from "./status-query.ts";

const usage = `Usage: tributary status [--database-url URL] [--json]

Alarms first: committed messages the relay set aside (unsigned, forged or
refused; see tributary.rejected_messages), relays that hold their slot but
stopped making progress, lost slots. Then streams with their partitions and
event counts; each relay slot with its state (active: a relay holds the
slot's lock and renews its lease; stalled: it holds the lock but stopped
renewing; standbys waiting to take over), lag
(WAL bytes not yet acknowledged, and for how long), WAL retained and WAL
status; consumer groups with their members and total lag; queues with their
messages ready (the depth), in flight, delayed and dead, and their live
workers (a heartbeat in the last 15 s) with the rate they ack messages at
(\`tributary queues\` has more); captured tables with their stream and state
(snapshotting, with rows read of the estimate; streaming; stopped, and why;
\`tributary capture list\` has more).

Slot alarms: a slot keeping more WAL than --max-retained-wal, a wal_status of
extended or unreserved (the server running out of room for its WAL), a slot
with no active relay for longer than --max-inactive, and an unlimited
max_slot_wal_keep_size (a slot nobody reads can fill the disk).

  --database-url URL   PostgreSQL to inspect (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)
  --json               one JSON object for programs
  --check              exit 1 when any alarm is on (for cron or a health probe)
${alarmUsage}`;


export async function statusCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    ...databaseUrlOption,
    json: { type: "boolean" },
    check: { type: "boolean" },
    ...alarmOptions,
  }, usage);
  const settings = alarmSettings(values);
  const sql = connectPostgres(databaseUrl(values), { max: 1, onnotice: () => {} });
  let alarms = 0;
  try {
    const status = await readStatus(sql, settings);
    alarms = status.alarms.length;
    process.stdout.write(values.json ? JSON.stringify(status) + "\n" : formatStatus(status));
  } finally {
    await sql.end({ timeout: 1 });
  }
  if (values.check && alarms > 0) process.exitCode = 1;
}

/** "7 days, 10.0 GB, 1000000 events, kept for group audit", or "everything". */
function formatRetention(retention: StreamStatus["retention"]): string {
  if (!retention) return "everything";
  return [
    retention.maxAge,
    retention.maxBytes === null ? null : formatBytes(retention.maxBytes),
    retention.maxEvents === null ? null : `${retention.maxEvents} events`,
    retention.protectGroup === null ? null : `unread by group ${retention.protectGroup} kept`,
  ].filter((part) => part !== null).join(", ");
}

function formatStatus(status: Status): string {
  const lines = status.alarms.map((a) => `ALARM: ${a}`);
  if (lines.length > 0) lines.push("");
  lines.push("STREAM                           PARTITIONS       EVENTS     RETAINED  SIZE         RETENTION");
  for (const s of status.streams) {
    lines.push(`${s.stream.padEnd(32)} ${String(s.partitions).padStart(10)} ${String(s.events).padStart(12)} ${String(s.retained ?? s.events).padStart(12)}  ` +
      `${formatBytes(s.bytes ?? null).padEnd(12)} ${formatRetention(s.retention)}`);
  }
  if (status.streams.length === 0) lines.push("(no streams yet)");

  lines.push("", "RELAY SLOT        DECODER    STATE    STANDBYS  LAG          LAG TIME     WAL RETAINED  WAL STATUS  CHECKPOINT");
  for (const r of status.relays) {
    lines.push(
      `${r.slot.padEnd(17)} ${r.plugin.padEnd(10)} ${(r.state === "lost" ? "LOST" : r.state).padEnd(8)} ` +
        `${String(r.standbys).padEnd(9)} ${formatBytes(r.lagBytes).padEnd(12)} ` +
        `${formatSeconds(r.lagSeconds).padEnd(12)} ${formatBytes(r.walRetainedBytes).padEnd(13)} ${(r.walStatus ?? "-").padEnd(11)} ` +
        `${r.checkpointLsn} at ${r.checkpointAt}`,
    );
  }
  if (status.relays.length === 0) lines.push("(no relay slot: run tributary migrate)");

  lines.push("", "GROUP                            MEMBERS (ALIVE)          LAG");
  for (const g of status.groups) lines.push(`${g.group.padEnd(32)} ${`${g.members} (${g.aliveMembers})`.padEnd(16)} ${String(g.lag).padStart(12)}`);
  if (status.groups.length === 0) lines.push("(no consumer groups)");

  if (status.queues !== undefined) {
    lines.push("", "QUEUE                                 READY  IN FLIGHT    DELAYED       DEAD  OLDEST READY  WORKERS      RATE");
    for (const q of status.queues) {
      lines.push(
        `${q.queue.padEnd(32)} ${String(q.ready).padStart(10)} ${String(q.inFlight).padStart(10)} ${String(q.delayed).padStart(10)} ` +
          `${String(q.dead).padStart(10)}  ${formatSeconds(q.oldestReadyAgeSeconds).padEnd(12)}  ${String(q.workers).padStart(7)} ${formatRate(q.succeededPerSecond).padStart(9)}`,
      );
    }
    if (status.queues.length === 0) lines.push("(no queues)");
  }

  if (status.captures !== undefined) {
    lines.push("", "CAPTURED TABLE                   STREAM                           STATE         DETAIL");
    for (const c of status.captures) {
      const detail = c.state === "snapshotting" ? `rows read ${snapshotCell(c.rowsDone, c.rowsEstimated, c.snapshotFilter)}`
        : c.state === "stopped" ? c.stopReason ?? "-" : "-";
      lines.push(`${c.table.padEnd(32)} ${c.stream.padEnd(32)} ${c.state.padEnd(13)} ${detail}`);
    }
    if (status.captures.length === 0) lines.push("(no captured tables)");
  }
  return lines.join("\n") + "\n";
}
