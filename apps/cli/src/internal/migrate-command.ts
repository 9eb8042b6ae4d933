import { connectPostgres } from "@tributary/client";
import { decoders, type Decoder } from "@tributary/core";
import { defaultSlotName, migrate } from "@tributary/migrate";
import { databaseUrl, databaseUrlOption, parse, UsageError } from "./args.ts";

const usage = `Usage: tributary migrate [--database-url URL] [--slot NAME] [--decoder pgoutput|wal2json]

Applies the schema migrations (each in a transaction, recorded with a checksum)
and creates the publication and the replication slot the relay reads, so events
appended from now on are captured even before a relay runs.

  --database-url URL   PostgreSQL to migrate (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)
  --slot NAME          replication slot name (default: ${defaultSlotName})
  --decoder NAME       output plugin of the slot: pgoutput (default) or wal2json`;

export async function migrateCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, { ...databaseUrlOption, slot: { type: "string" }, decoder: { type: "string" } }, usage);
  const decoder = (values.decoder ?? "pgoutput") as Decoder;
  if (!decoders.includes(decoder)) throw new UsageError(`unknown decoder '${values.decoder}': use pgoutput or wal2json`);
  const sql = connectPostgres(databaseUrl(values), { max: 1, onnotice: () => {} });
  try {
    const result = await migrate(sql, { slotName: values.slot ?? defaultSlotName, decoder });
    for (const file of result.applied) console.error(`applied ${String(file.version).padStart(4, "0")}_${file.name}.sql`);
    console.error(
      `schema up to date (${result.applied.length} applied, ${result.alreadyApplied} already applied); ` +
        `slot '${result.slot.slotName}' (${result.slot.plugin}) ready`,
    );
  } finally {
    await sql.end({ timeout: 1 });
  }
}
