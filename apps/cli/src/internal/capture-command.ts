/**
 * `tributary capture add | remove | list | backfill`: table capture (CDC)
 * through the SQL API's capture(), uncapture() and backfill() and the
 * tributary.captures view (capture-query.ts); `--wait` follows a snapshot
 * (capture-progress.ts).
 */
import type { Sql } from "postgres";
import { connectPostgres } from "@tributary/client";
import { databaseUrl, databaseUrlOption, parse, UsageError } from "./args.ts";
import {
  addCapture, backfillCapture, hasCaptures, listCaptures, removeCapture,
  type CaptureAdded, type CaptureDescription, type CaptureOptions, type SnapshotRequest,
} from "./capture-query.ts";
import { followSnapshot, progressPrinter, progressText, snapshotCell } from "./capture-progress.ts";
import { onShutdown } from "./shutdown.ts";
import { columns } from "./text-columns.ts";

const usage = `Usage: tributary capture add TABLE [--stream S] [--partitions N] [--snapshot initial|none] [--columns a,b,c] [--wait] [--json]
       tributary capture remove TABLE [--json]
       tributary capture list [--json]
       tributary capture backfill TABLE [--where CONDITION] [--wait] [--json]

Table capture (CDC): every row change of a captured table becomes an event of
a stream, in commit order, as a Debezium-shaped change event; the relay
streams them and reads the rows already there (the snapshot).

  add        capture a table (tributary.capture)
  remove     stop capturing it (tributary.uncapture); its stream stays
  list       captured tables with their state and snapshot progress
  backfill   read a captured table's rows into its stream again (tributary.backfill)

Every subcommand reads DATABASE_URL (or --database-url, --database-url-file)
and has --help.`;

const tableHelp = `TABLE is named as SQL names it: [schema.]table, looked up in the search path
without a schema; quote a mixed-case name as SQL does ('"Orders"').`;

const waitHelp = `  --wait               follow the snapshot until the relay has read every row:
                       rows read of the table's estimated rows, live on stderr;
                       exit 1 if the capture stops first or a backfill asked
                       since starts it over. Ctrl-C stops waiting, not the snapshot`;

const dbHelp = `  --database-url URL   PostgreSQL to change (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)`;

const jsonProgressHelp = `With --json --wait, each change of the snapshot's progress follows as one
JSON object per line: table, stream, captureId, state (waiting, snapshotting,
done, stopped, superseded), rowsDone, rowsEstimated, percent (null without an
estimate or with a filter), filter, stopReason, relayActive.`;

const addUsage = `Usage: tributary capture add TABLE [--stream S] [--partitions N] [--snapshot initial|none] [--columns a,b,c] [--wait] [--database-url URL] [--json]

Captures TABLE (tributary.capture): every row change committed from now on
becomes an event of the stream, keyed by the table's primary key (or replica
identity index). With --snapshot initial the relay first reads the rows
already there, in key-ordered chunks, as 'r' (read) events. Run again with
the same options it changes nothing and says so; with other options it is
refused: remove the capture first. Needs a role that owns TABLE and the
relay's publication (the role that ran tributary migrate, or a superuser).

${tableHelp}

  --stream S           the stream (default: <schema>.<table>); created when missing
  --partitions N       the partition count of a new stream (default 8)
  --snapshot MODE      initial (default: the existing rows first) or none
  --columns a,b,c      only these columns (the key columns are always carried)
${waitHelp}
${dbHelp}
  --json               print the result as one JSON object

${jsonProgressHelp}`;

const removeUsage = `Usage: tributary capture remove TABLE [--database-url URL] [--json]

Stops capturing TABLE (tributary.uncapture): changes committed after it are
not captured. The stream and its events stay. A table that is not captured
is left as it is (exit 0, and says so).

${tableHelp}

${dbHelp}
  --json               print the result as one JSON object`;

const listUsage = `Usage: tributary capture list [--database-url URL] [--json]

Every captured table (its latest capture) with its stream and state:
  snapshotting  the relay is reading the rows already there: rows read of
                the planner's estimate (~; 0 for a table never analyzed)
  streaming     its row changes become events as they commit
  stopped       removed, its table dropped, or stopped by the relay (the reason)
and when it started and last changed.

  --database-url URL   PostgreSQL to inspect (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)
  --json               one JSON object per capture per line, for programs`;

const backfillUsage = `Usage: tributary capture backfill TABLE [--where CONDITION] [--wait] [--database-url URL] [--json]

Reads the rows of a captured TABLE into its stream again, as 'r' events
(tributary.backfill): for a new consumer, or after retention removed them.
The relay reads them in key-ordered chunks while changes go on streaming. A
snapshot or backfill of TABLE in progress starts over with this one.

${tableHelp}

  --where CONDITION    only rows matching CONDITION, as it would follow WHERE
                       (e.g. "created_at > now() - interval '1 day'"); checked now
${waitHelp}
${dbHelp}
  --json               print the request as one JSON object

${jsonProgressHelp}`;

export async function captureCommand(argv: string[]): Promise<void> {
  const [subcommand, ...rest] = argv;
  if (subcommand === "add") return addCommand(rest);
  if (subcommand === "remove") return removeCommand(rest);
  if (subcommand === "list") return listCommand(rest);
  if (subcommand === "backfill") return backfillCommand(rest);
  if (subcommand === "--help" || subcommand === "-h") {
    process.stdout.write(usage + "\n");
    return;
  }
  throw new UsageError(`${subcommand === undefined ? "no subcommand given" : `unknown subcommand '${subcommand}'`}\n\n${usage}`);
}

async function addCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    ...databaseUrlOption,
    stream: { type: "string" },
    partitions: { type: "string" },
    snapshot: { type: "string" },
    columns: { type: "string" },
    wait: { type: "boolean" },
    json: { type: "boolean" },
  }, addUsage);
  const table = oneTable(positionals, addUsage);
  const options: CaptureOptions = {};
  if (values.stream !== undefined) options.stream = values.stream;
  if (values.partitions !== undefined) {
    if (!/^[0-9]{1,5}$/.test(values.partitions)) throw new UsageError(`--partitions must be a whole number from 1 to 10000, not '${values.partitions}'`);
    options.partitions = Number(values.partitions);
  }
  if (values.snapshot !== undefined) {
    if (values.snapshot !== "initial" && values.snapshot !== "none") {
      throw new UsageError(`--snapshot must be initial (the existing rows first) or none, not '${values.snapshot}'`);
    }
    options.snapshot = values.snapshot;
  }
  if (values.columns !== undefined) {
    const names = values.columns.split(",").map((c) => c.trim());
    if (names.some((c) => c === "")) throw new UsageError(`--columns must be column names separated by commas, not '${values.columns}'`);
    options.columns = names;
  }
  await withDatabase(databaseUrl(values), async (sql) => {
    const added = await addCapture(sql, table, options);
    process.stdout.write(values.json ? JSON.stringify(addedJson(added)) + "\n" : formatAdded(added));
    if (!values.wait) return;
    if (added.requestedAt === null) {
      if (!values.json) process.stdout.write("(no snapshot to wait for: the capture was made with --snapshot none)\n");
      return;
    }
    await waitFor(sql, "snapshot", added, values.json ?? false);
  });
}

async function removeCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...databaseUrlOption, json: { type: "boolean" } }, removeUsage);
  const table = oneTable(positionals, removeUsage);
  await withDatabase(databaseUrl(values), async (sql) => {
    const removed = await removeCapture(sql, table);
    if (values.json) process.stdout.write(JSON.stringify(removed) + "\n");
    else if (removed.removed) process.stdout.write(`stopped capturing ${removed.table}: stream '${removed.stream}' keeps its events\n`);
    else process.stdout.write(`${removed.table} was not captured: nothing changed\n`);
  });
}

async function listCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...databaseUrlOption, json: { type: "boolean" } }, listUsage);
  if (positionals.length > 0) throw new UsageError(`capture list takes no arguments, not ${positionals.join(" ")}\n\n${listUsage}`);
  await withDatabase(databaseUrl(values), async (sql) => {
    const captures = await listCaptures(sql);
    if (values.json) process.stdout.write(captures.map((c) => JSON.stringify(c) + "\n").join(""));
    else process.stdout.write(formatList(captures));
  });
}

async function backfillCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    ...databaseUrlOption,
    where: { type: "string" },
    wait: { type: "boolean" },
    json: { type: "boolean" },
  }, backfillUsage);
  const table = oneTable(positionals, backfillUsage);
  if (values.where !== undefined && values.where.trim() === "") throw new UsageError("--where is empty: give a condition, or leave --where out for every row");
  await withDatabase(databaseUrl(values), async (sql) => {
    const request = await backfillCapture(sql, table, values.where ?? null);
    const filter = values.where === undefined ? "" : ` where ${values.where}`;
    process.stdout.write(values.json
      ? JSON.stringify({ table: request.table, stream: request.stream, captureId: request.captureId, filter: request.filter }) + "\n"
      : `asked the relay to read ${request.table}${filter} into stream '${request.stream}' again\n`);
    if (values.wait) await waitFor(sql, "backfill", request, values.json ?? false);
  });
}

/** Follows the request; exit 1 (an Error) when it ends without every row read. */
async function waitFor(sql: Sql, what: string, request: SnapshotRequest, json: boolean): Promise<void> {
  const printer = progressPrinter(what, {
    json,
    tty: process.stderr.isTTY === true,
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    now: () => performance.now(),
  });
  const stop = new AbortController();
  const following = followSnapshot(sql, request, printer, stop.signal);
  onShutdown(async () => {
    stop.abort();
    await following.catch(() => undefined);
    process.stderr.write(`stopped waiting: the ${what} goes on in the relay (tributary capture list shows it)\n`);
  });
  const outcome = await following;
  if (outcome !== null && outcome.state !== "done") throw new Error(progressText(what, outcome, null));
}

function oneTable(positionals: string[], usage: string): string {
  if (positionals.length !== 1) {
    throw new UsageError(`${positionals.length === 0 ? "no table given" : `one table at a time, not ${positionals.join(" ")}`}\n\n${usage}`);
  }
  return positionals[0]!;
}

async function withDatabase(url: string, body: (sql: Sql) => Promise<void>): Promise<void> {
  const sql = connectPostgres(url, { max: 1, onnotice: () => {} });
  try {
    if (!(await hasCaptures(sql))) {
      throw new Error("this database has no table capture (tributary.captures): run tributary migrate to bring the schema up to date");
    }
    await body(sql);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

function addedJson(a: CaptureAdded) {
  return { table: a.table, stream: a.stream, alreadyCaptured: a.alreadyCaptured, snapshot: a.snapshot, keyColumns: a.keyColumns, columns: a.columns, captureId: a.captureId };
}

function formatAdded(a: CaptureAdded): string {
  const what = a.columns === null ? "" : `, columns ${a.columns.join(", ")}`;
  if (a.alreadyCaptured) return `${a.table} is already captured into stream '${a.stream}' with these options: nothing changed\n`;
  const snapshot = a.snapshot === "initial" ? "the relay reads its existing rows first" : "no snapshot: changes from now on only";
  return `captured ${a.table} into stream '${a.stream}' (key ${a.keyColumns.join(", ")}${what}; ${snapshot})\n`;
}

function formatList(captures: CaptureDescription[]): string {
  if (captures.length === 0) return "(no captured tables: capture one with tributary capture add TABLE)\n";
  return columns(
    ["TABLE", "STREAM", "STATE", "ROWS", "STARTED", "LAST CHANGE", "STOP REASON"],
    captures.map((c) => [c.table, c.stream, c.state, c.state === "snapshotting" ? snapshotCell(c.rowsDone, c.rowsEstimated, c.snapshotFilter) : "-", c.startedAt, c.lastChangeAt ?? "-", c.stopReason ?? "-"]),
    "lllrlll",
  ).join("\n") + "\n";
}
