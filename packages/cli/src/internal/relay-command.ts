import { defaultSlotName, decoders, type Decoder } from "@tributary/migrate";
import { startRelay } from "@tributary/relay";
import { databaseUrl, databaseUrlOption, parse, UsageError } from "./args.ts";
import { onShutdown } from "./shutdown.ts";

const usage = `Usage: tributary relay [--database-url URL] [--slot NAME] [--decoder pgoutput|wal2json]

Copies committed events from the replication slot into tributary.events with
dense per-partition offsets. Run several: one is active, the others wait as
standbys and take over within seconds when it dies. SIGTERM/SIGINT stop it
cleanly (exit 0).

  --database-url URL     PostgreSQL to relay (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)
  --slot NAME            replication slot (default: ${defaultSlotName})
  --decoder NAME         expected output plugin (default: the slot's own)
  --max-batch-events N   events per stream write (default 5000)`;

export async function relayCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    ...databaseUrlOption,
    slot: { type: "string" },
    decoder: { type: "string" },
    "max-batch-events": { type: "string" },
  }, usage);
  const decoder = values.decoder as Decoder | undefined;
  if (decoder !== undefined && !decoders.includes(decoder)) throw new UsageError(`unknown decoder '${decoder}': use pgoutput or wal2json`);
  const maxBatchEvents = values["max-batch-events"] ? Number(values["max-batch-events"]) : undefined;
  if (maxBatchEvents !== undefined && !(Number.isInteger(maxBatchEvents) && maxBatchEvents > 0)) {
    throw new UsageError(`--max-batch-events must be a positive integer, not '${values["max-batch-events"]}'`);
  }
  const handle = startRelay({
    databaseUrl: databaseUrl(values),
    slotName: values.slot ?? defaultSlotName,
    ...(decoder ? { decoder } : {}),
    ...(maxBatchEvents ? { maxBatchEvents } : {}),
  });
  onShutdown(() => handle.stop());
  await handle.done;
}
