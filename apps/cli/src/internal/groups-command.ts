import {
  connectPostgres, describeGroups, parseStartPosition, resetGroupOffsets, TributaryGroupError, TributaryReadError,
  type GroupDescription, type GroupReset, type ResetTarget,
} from "@tributary/client";
import { databaseUrl, databaseUrlOption, parse, UsageError } from "./args.ts";
import { cliMessage } from "./cli-errors.ts";
import { columns } from "./text-columns.ts";

const listUsage = `Usage: tributary groups [--database-url URL] [--group NAME] [--json]
       tributary groups reset GROUP --stream STREAM --to earliest|latest|OFFSET|TIME

Consumer groups with their members (alive: a heartbeat within the session
timeout), and per partition the owner, the committed offset (the next offset
the group will handle; "(expired)" when retention dropped events below it),
the low watermark (LOW: the first offset retention kept), the partition's end
and the lag.

  --database-url URL   PostgreSQL to inspect (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)
  --group NAME         only this group
  --json               one JSON object per group per line, for programs

Run \`tributary groups reset --help\` for moving a group's offsets.`;

const resetUsage = `Usage: tributary groups reset GROUP --stream STREAM --to earliest|latest|OFFSET|TIME [--database-url URL] [--json]

Sets the group's committed offset on every partition of the stream, in one
transaction, and prints each partition's old → new offset. A group that does
not exist yet is created (that is how a group starts at a chosen position).
Refused while a member subscribed to the stream is alive: stop the group's
consumers first (or wait for their session timeout).

  --stream STREAM      the stream whose partitions to move
  --to earliest        offset 0: handle the whole stream again
  --to latest          each partition's end: skip everything appended so far
  --to OFFSET          this offset on every partition (at most each partition's end)
  --to TIME            per partition, the first event committed at or after an
                       ISO 8601 time (e.g. 2026-01-31T12:00:00Z), else the end
  --database-url URL   PostgreSQL to change (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)
  --json               print the result as one JSON object`;

export async function groupsCommand(argv: string[]): Promise<void> {
  if (argv[0] === "reset") return resetCommand(argv.slice(1));
  const { values, positionals } = parse(argv, { ...databaseUrlOption, group: { type: "string" }, json: { type: "boolean" } }, listUsage);
  if (positionals.length > 0) throw new UsageError(`unknown subcommand '${positionals[0]}'\n\n${listUsage}`);
  const sql = connectPostgres(databaseUrl(values), { max: 1, onnotice: () => {} });
  try {
    const groups = await describeGroups(sql, values.group === undefined ? {} : { group: values.group }).catch(asUsageError);
    if (values.json) {
      process.stdout.write(groups.map((g) => JSON.stringify(g) + "\n").join(""));
      return;
    }
    process.stdout.write(groups.length === 0 ? "(no consumer groups)\n" : groups.map(formatGroup).join("\n"));
  } finally {
    await sql.end({ timeout: 1 });
  }
}

async function resetCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...databaseUrlOption, stream: { type: "string" }, to: { type: "string" }, json: { type: "boolean" } }, resetUsage);
  if (positionals.length !== 1) throw new UsageError(`give exactly one GROUP\n\n${resetUsage}`);
  if (values.stream === undefined) throw new UsageError(`--stream is required\n\n${resetUsage}`);
  if (values.to === undefined) throw new UsageError(`--to is required\n\n${resetUsage}`);
  const to = parseTarget(values.to);
  const sql = connectPostgres(databaseUrl(values), { max: 1, onnotice: () => {} });
  try {
    const reset = await resetGroupOffsets(sql, { group: positionals[0]!, stream: values.stream, to }).catch(asUsageError);
    process.stdout.write(values.json ? JSON.stringify(reset) + "\n" : formatReset(reset, values.to));
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** earliest | latest | an offset | an ISO 8601 time, read as `tail --from` reads them (the client's parseStartPosition). */
function parseTarget(text: string): ResetTarget {
  try {
    return parseStartPosition(text);
  } catch (error) {
    if (!(error instanceof TributaryReadError)) throw error;
    throw new UsageError(`--to ${text}: not earliest, latest, an offset or an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)\n\n${resetUsage}`);
  }
}

/** A refusal or bad input from the group API is the caller's to fix: exit 2 with its message. */
function asUsageError(error: unknown): never {
  if (error instanceof TributaryGroupError) throw new UsageError(cliMessage(error));
  throw error;
}

function formatGroup(g: GroupDescription): string {
  const alive = g.members.filter((m) => m.alive).length;
  const lines = [`GROUP ${g.group}  generation ${g.generation}  members ${g.members.length} (${alive} alive)  lag ${g.lag}`];
  const behind = g.partitions.filter((p) => p.behindRetention);
  if (behind.length > 0) {
    const missed = behind.reduce((n, p) => n + p.lowWatermark - p.committedOffset!, 0);
    lines.push(`BEHIND RETENTION: ${behind.length} partition${behind.length === 1 ? "" : "s"} committed below the low watermark; ${missed} event${missed === 1 ? "" : "s"} expired unread`);
  }
  if (g.members.length > 0) {
    lines.push(...columns(
      ["MEMBER", "STATE", "STREAMS", "LAST HEARTBEAT", "CLIENT"],
      g.members.map((m) => [m.memberId, m.alive ? "alive" : "dead", m.streams.join(","), m.heartbeatAt.toISOString(), m.client ?? "-"]),
      "llll",
    ));
  }
  if (g.partitions.length > 0) {
    lines.push(...columns(
      ["STREAM", "PARTITION", "OWNER", "GEN", "LOW", "COMMITTED", "END", "LAG", "COMMITTED AT"],
      g.partitions.map((p) => [
        p.stream,
        String(p.partition),
        p.releasingMember ? `${p.owner} (from ${p.releasingMember})` : p.owner ?? "-",
        p.generation === null ? "-" : String(p.generation),
        String(p.lowWatermark),
        p.committedOffset === null ? "-" : `${p.committedOffset}${p.behindRetention ? " (expired)" : ""}`,
        String(p.endOffset),
        String(p.lag),
        p.committedAt?.toISOString() ?? "-",
      ]),
      "lrlrrrrrl",
    ));
  }
  return lines.join("\n") + "\n";
}

function formatReset(reset: GroupReset, to: string): string {
  const lines = [
    `reset group '${reset.group}' on stream '${reset.stream}' to ${to}${reset.createdGroup ? " (created the group)" : ""}:`,
    ...reset.partitions.map((p) => `  partition ${p.partition}: ${p.previous === null ? "-" : p.previous} → ${p.next}`),
  ];
  return lines.join("\n") + "\n";
}
