/**
 * `tributary jobs [QUEUE] [--id N …]`: job state changes as JSON lines, as
 * they commit (queues created with notify_states), until SIGTERM/SIGINT.
 */
import { watchJobs, connectPostgres } from "@tributary/client";
import { databaseUrl, databaseUrlOption, parse, UsageError } from "./args.ts";
import { onShutdown } from "./shutdown.ts";

const usage = `Usage: tributary jobs [QUEUE] [--id N ...] [--database-url URL]

Prints job state changes as they commit, one JSON object per line:
{"queue", "id", "state", "deliveries", "error", "at"} with state one of
queued, running, succeeded, failed (will be retried), dead. Only queues created
with the notify_states option emit them:
  select tributary.create_queue('emails', '{"notify_states": true}');
Changes from before the command started are not shown. Runs until SIGTERM/SIGINT.

  QUEUE                only this queue (default: every queue)
  --id N               only this job (repeat for several)
  --database-url URL   PostgreSQL to watch (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)`;

export async function jobsCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...databaseUrlOption, id: { type: "string", multiple: true } }, usage);
  if (positionals.length > 1) throw new UsageError(`one queue at a time, not ${positionals.join(" ")}\n\n${usage}`);
  const ids = values.id as string[] | undefined;
  for (const id of ids ?? []) if (!/^\d+$/.test(id)) throw new UsageError(`--id must be a job id (a number), not '${id}'`);
  const sql = connectPostgres(databaseUrl(values), { max: 1, onnotice: () => {} });
  const stop = new AbortController();
  const queue = positionals[0];
  if (queue !== undefined) {
    const [known] = await sql<{ ok: boolean }[]>`select exists (select 1 from tributary.queues where name = ${queue}) as ok`;
    if (!known?.ok) {
      await sql.end();
      throw new UsageError(`queue '${queue}' does not exist (tributary queues lists them)`);
    }
  }
  const watching = (async () => {
    for await (const change of watchJobs(sql, { ...(queue !== undefined ? { queue } : {}), ...(ids ? { ids } : {}), signal: stop.signal })) {
      process.stdout.write(JSON.stringify({ ...change, at: change.at.toISOString() }) + "\n");
    }
  })().finally(() => sql.end({ timeout: 1 }));
  process.stderr.write(`[tributary jobs] watching ${queue ?? "every queue"}\n`);
  onShutdown(async () => {
    stop.abort();
    await watching;
  });
  await watching;
}
