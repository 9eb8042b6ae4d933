/**
 * `tributary tail STREAM`: print a stream's events as JSON lines, from a start
 * position, then new ones as the relay writes them, until SIGTERM/SIGINT.
 * Without --group it is a plain reader (nothing committed); see reader.ts.
 * A dropped connection is retried with backoff and the tail resumes where it
 * was; an error that cannot heal (authentication, unknown database,
 * permission denied) exits 1 with the server's message.
 */
import { connectPostgres, consumer, jsonText, parseStartPosition, streamPartitions, tailPartition, tailStream, TributaryReadError, type StreamEvent } from "@tributary/client";
import { databaseUrl, databaseUrlOption, parse, UsageError } from "./args.ts";
import { cliMessage } from "./cli-errors.ts";
import { onShutdown } from "./shutdown.ts";

const usage = `Usage: tributary tail STREAM [--from earliest|latest|OFFSET|TIME] [--partition N] [--database-url URL]
       tributary tail STREAM --group G [--from earliest|latest|TIME] [--database-url URL]

Prints the events of STREAM as they arrive, one JSON object per line on stdout:
stream, partition, offset, id, key, type, data, headers, committed_at (ISO).
Each partition is printed in offset order. Runs until SIGTERM/SIGINT (Ctrl-C),
then exits 0. Without --group nothing is committed: run it again and it starts
from --from again. A lost connection is retried with backoff (reported on
stderr) and the tail resumes at the next event of each partition; errors that
cannot heal (authentication, no such database, permission denied) exit 1.

  --group G            read as a member of consumer group G: share the stream's
                       partitions with G's other members, commit the offsets after
                       each printed batch (at-least-once), resume from G's commits
                       next time (--from only applies to partitions G never
                       committed); SIGTERM/SIGINT leave the group cleanly

  --from POSITION      where each partition starts (default: latest)
                         latest    only events appended from now on (as Kafka's console consumer)
                         earliest  from the first event
                         OFFSET    from that offset (needs --partition: offsets are per partition)
                         TIME      from the first event committed at or after an ISO 8601 time,
                                   e.g. 2025-01-31T12:00:00Z (without a zone: local time)
  --partition N        only partition N (default: every partition)
  --database-url URL   PostgreSQL to read (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)`;

export async function tailCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    ...databaseUrlOption,
    from: { type: "string" },
    partition: { type: "string" },
    group: { type: "string" },
  }, usage);

  if (positionals.length !== 1) {
    throw new UsageError(`${positionals.length === 0 ? "no stream given" : `one stream at a time, not ${positionals.join(" ")}`}\n\n${usage}`);
  }
  const stream = positionals[0]!;
  let from;
  try {
    from = parseStartPosition(values.from ?? "latest");
  } catch (error) {
    if (error instanceof TributaryReadError) throw new UsageError(`--from: ${cliMessage(error)}`);
    throw error;
  }
  const partition = values.partition === undefined ? undefined : Number(values.partition);
  if (partition !== undefined && !(/^\d+$/.test(values.partition!) && Number.isSafeInteger(partition))) {
    throw new UsageError(`--partition must be a partition number (0, 1, …), not '${values.partition}'`);
  }
  if (values.group !== undefined) {
    if (!/^[A-Za-z0-9._-]{1,200}$/.test(values.group)) {
      throw new UsageError(`--group: invalid group name '${values.group}': a group name is 1 to 200 characters of A-Z a-z 0-9 . _ -`);
    }
    if (partition !== undefined) throw new UsageError("--partition and --group do not mix: a group member reads the partitions the group assigns it");
    if (typeof from === "number") throw new UsageError(`--from ${from}: a group starts new partitions at earliest, latest or a time; to move a group to an offset use tributary groups reset`);
    return tailAsGroupMember(databaseUrl(values), stream, values.group, from);
  }
  if (typeof from === "number" && partition === undefined) {
    throw new UsageError(`--from ${from} is an offset, and offsets are per partition: add --partition N, or use earliest, latest or a time`);
  }

  const sql = connectPostgres(databaseUrl(values), { max: 1, onnotice: () => {}, connection: { application_name: "tributary tail" } });
  const stop = new AbortController();
  // A dropped connection is retried with backoff and resumes at each partition's next offset (reader.ts).
  const onReconnect = (error: unknown, attempt: number, delayMs: number) =>
    process.stderr.write(`[tributary tail] connection lost (${(error as Error)?.message ?? String(error)}); reconnecting in ${delayMs} ms (attempt ${attempt})\n`);
  const events =
    partition === undefined
      ? tailStream(sql, { stream, from, signal: stop.signal, onReconnect })
      : tailPartition(sql, { stream, partition, from, signal: stop.signal, onReconnect });
  const printing = printEvents(events).finally(() => sql.end({ timeout: 1 }));
  onShutdown(async () => {
    stop.abort();
    await printing;
  });
  try {
    await printing;
  } catch (error) {
    if (error instanceof TributaryReadError) throw new UsageError(cliMessage(error));
    throw error;
  }
}

/** A consumer group member that prints each batch, then lets the consumer commit it (at-least-once). */
async function tailAsGroupMember(url: string, stream: string, group: string, from: "earliest" | "latest" | Date): Promise<void> {
  const sql = connectPostgres(url, { max: 4, onnotice: () => {}, connection: { application_name: "tributary tail" } });
  // As without --group: an unknown stream is a mistake to report, not a stream to create.
  try {
    await streamPartitions(sql, stream);
  } catch (error) {
    await sql.end({ timeout: 1 });
    if (error instanceof TributaryReadError) throw new UsageError(cliMessage(error));
    throw error;
  }
  exitOnClosedStdout();
  // A signal while joining still leaves the group: stop once the join is in.
  const joining = consumer(sql, {
    group,
    streams: [stream],
    startFrom: from,
    log: (message) => process.stderr.write(`[tributary tail] ${message}\n`),
    batchHandler: async (events) => {
      for (const e of events) await printLine(e);
    },
  });
  onShutdown(async () => {
    const member = await joining.catch(() => null);
    await member?.stop();
    await sql.end({ timeout: 1 });
  });
  let member;
  try {
    member = await joining;
  } catch (error) {
    await sql.end({ timeout: 1 });
    const e = error as { code?: string; message?: string };
    if (e?.code === "22023") throw new UsageError(e.message ?? String(error));
    throw error;
  }
  await member.done;
}

function exitOnClosedStdout(): void {
  // `tributary tail s | head -3`: the reader went away, which is a normal end.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(0);
    throw error;
  });
}

async function printEvents(events: AsyncIterable<StreamEvent>): Promise<void> {
  exitOnClosedStdout();
  for await (const e of events) await printLine(e);
}

async function printLine(e: StreamEvent): Promise<void> {
  // jsonText, not JSON.stringify: data nested thousands deep overflowed the stack and ended the tail.
  const line = jsonText({
    stream: e.stream,
    partition: e.partition,
    offset: e.offset,
    id: e.id,
    key: e.key,
    type: e.type,
    data: e.data,
    headers: e.headers,
    committed_at: e.committedAt.toISOString(),
  });
  if (!process.stdout.write(line + "\n")) await new Promise((resolve) => process.stdout.once("drain", resolve));
}
