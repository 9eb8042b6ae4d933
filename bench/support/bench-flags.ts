/** Command-line flags shared by the benchmarks (`--name value`, `--flag`). */
import { parseArgs } from "node:util";
import type { Decoder } from "@tributary/core";
import type { ServerKind } from "@tributary/testkit";

export interface ServerFlags {
  readonly server: ServerKind;
  readonly decoder: Decoder;
  /** Extra postgresql.conf settings, the same for both sides of every comparison. */
  readonly settings: Record<string, string>;
}

const serverOptions = {
  server: { type: "string", default: "embedded18" },
  decoder: { type: "string" },
  fsync: { type: "string", default: "off" },
  "full-page-writes": { type: "string", default: "off" },
  help: { type: "boolean", short: "h" },
} as const;

export const serverUsage = `  --server embedded18|system15  PostgreSQL to start (default embedded18: PostgreSQL 18)
  --decoder pgoutput|wal2json   output plugin of the slots (default pgoutput; wal2json needs --server system15)
  --fsync on|off                (default off, the testkit's setting)
  --full-page-writes on|off     (default off, the testkit's setting)`;

type FlagOptions = Record<string, { type: "string" | "boolean"; default?: string | boolean }>;

/** The shared server flags plus `extra`; prints `usage` and exits on --help. */
export function parseBenchFlags(argv: string[], extra: FlagOptions, usage: string) {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options: { ...serverOptions, ...extra }, strict: true, allowPositionals: false }).values;
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${usage}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(usage + "\n");
    process.exit(0);
  }
  const server = values.server as string;
  if (server !== "embedded18" && server !== "system15") throw new Error(`--server must be embedded18 or system15, not ${server}`);
  const decoder = (values.decoder as string | undefined) ?? "pgoutput";
  if (decoder !== "pgoutput" && decoder !== "wal2json") throw new Error(`--decoder must be pgoutput or wal2json, not ${decoder}`);
  if (decoder === "wal2json" && server !== "system15") {
    throw new Error("wal2json is only installed for the system PostgreSQL 15: add --server system15");
  }
  const flags: ServerFlags = {
    server,
    decoder,
    settings: { fsync: values.fsync as string, full_page_writes: values["full-page-writes"] as string },
  };
  return { flags, values };
}

export function positiveInt(value: string | boolean | undefined, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, not ${String(value)}`);
  return n;
}
