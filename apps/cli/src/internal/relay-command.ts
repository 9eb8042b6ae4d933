import { decoders, type Decoder } from "@tributary/core";
import { defaultSlotName } from "@tributary/migrate";
import { startRelay } from "@tributary/relay";
import { databaseUrl, databaseUrlOption, parse, parseSize, UsageError } from "./args.ts";
import { metricsOptions, metricsUsage, startMetrics } from "./metrics-option.ts";
import { onShutdown } from "./shutdown.ts";

const usage = `Usage: tributary relay [--database-url URL] [--slot NAME] [--decoder pgoutput|wal2json]

Copies committed events from the replication slot into tributary.events with
dense per-partition offsets. Run several on the same slot: one is active, the
others wait as standbys and take over within seconds when it dies, and within
--takeover-after when it freezes or hangs while still connected. Messages
that cannot become events (unsigned, forged, refused by the stream table) are
set aside in tributary.rejected_messages; the relay goes on. SIGTERM/SIGINT
stop it cleanly (exit 0); errors no retry can heal (login refused, missing
privileges or schema, a lost or re-created slot) stop it with exit 1 and what
to do.

  --database-url URL        PostgreSQL to relay (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)
  --slot NAME               replication slot (default: ${defaultSlotName})
  --decoder NAME            expected output plugin (default: the slot's own)
  --max-batch-events N      events per stream write (default 5000)
  --takeover-after SECONDS  a standby takes over an active relay that made no
                            progress for this long (default 15)
  --write-timeout SECONDS   a batch write that takes longer ends the session
                            and is written again (default 60)
  --retention-interval SECONDS
                            how often the active relay rolls segments and
                            drops expired ones (tributary.set_retention;
                            default 10)
  --max-retained-wal SIZE   log an alarm when the slot keeps more WAL, e.g.
                            500MB, 2GB (default 1GB)
  --no-wal-keep-limit       an unlimited max_slot_wal_keep_size is no alarm
  --alarm-interval SECONDS  how often the active relay looks at its slot for
                            alarms (default 30)
${metricsUsage}`;

function seconds(values: Record<string, unknown>, name: string): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!(Number.isFinite(value) && value > 0)) throw new UsageError(`--${name} must be a positive number of seconds, not '${String(raw)}'`);
  return Math.round(value * 1000);
}

export async function relayCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    ...databaseUrlOption,
    slot: { type: "string" },
    decoder: { type: "string" },
    "max-batch-events": { type: "string" },
    "takeover-after": { type: "string" },
    "write-timeout": { type: "string" },
    "retention-interval": { type: "string" },
    "max-retained-wal": { type: "string" },
    "no-wal-keep-limit": { type: "boolean" },
    "alarm-interval": { type: "string" },
    ...metricsOptions,
  }, usage);
  const alarmIntervalMs = seconds(values, "alarm-interval");
  const maxRetainedWal = typeof values["max-retained-wal"] === "string" ? parseSize(values["max-retained-wal"], "--max-retained-wal") : undefined;
  const retentionIntervalMs = seconds(values, "retention-interval");
  const takeoverAfterMs = seconds(values, "takeover-after");
  const writeTimeoutMs = seconds(values, "write-timeout");
  const decoder = values.decoder as Decoder | undefined;
  if (decoder !== undefined && !decoders.includes(decoder)) throw new UsageError(`unknown decoder '${decoder}': use pgoutput or wal2json`);
  const maxBatchEvents = values["max-batch-events"] ? Number(values["max-batch-events"]) : undefined;
  if (maxBatchEvents !== undefined && !(Number.isInteger(maxBatchEvents) && maxBatchEvents > 0)) {
    throw new UsageError(`--max-batch-events must be a positive integer, not '${values["max-batch-events"]}'`);
  }
  const metrics = await startMetrics(values);
  const handle = startRelay({
    databaseUrl: databaseUrl(values),
    slotName: values.slot ?? defaultSlotName,
    ...(decoder ? { decoder } : {}),
    ...(maxBatchEvents ? { maxBatchEvents } : {}),
    ...(takeoverAfterMs ? { takeoverAfterMs } : {}),
    ...(writeTimeoutMs ? { writeTimeoutMs } : {}),
    ...(retentionIntervalMs ? { retentionIntervalMs } : {}),
    ...(metrics ? { metrics: metrics.registry } : {}),
    ...(alarmIntervalMs ? { alarmIntervalMs } : {}),
    alarms: {
      ...(maxRetainedWal !== undefined ? { maxRetainedWalBytes: maxRetainedWal } : {}),
      ...(values["no-wal-keep-limit"] ? { walKeepLimitRequired: false } : {}),
    },
  });
  onShutdown(async () => {
    await handle.stop();
    await metrics?.endpoint.close();
  });
  try {
    await handle.done;
  } finally {
    await metrics?.endpoint.close();
  }
}
