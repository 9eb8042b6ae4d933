/**
 * Shared flag handling: every command reads its database from --database-url,
 * --database-url-file, DATABASE_URL or DATABASE_URL_FILE, and has --help.
 * A password given on the command line is visible to every user of the
 * machine (ps): we warn and say how to pass it instead.
 */
import { readFileSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";

export class UsageError extends Error {
  override readonly name = "UsageError";
}

export type Options = NonNullable<ParseArgsConfig["options"]>;

export function parse<O extends Options>(argv: string[], options: O, usage: string) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\n${usage}`);
  }
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(usage + "\n");
    process.exit(0);
  }
  return parsed;
}

export const databaseUrlOption = { "database-url": { type: "string" }, "database-url-file": { type: "string" } } as const;


export function databaseUrl(values: { "database-url"?: string | boolean | undefined; "database-url-file"?: string | boolean | undefined }): string {
  const flagUrl = values["database-url"] as string | undefined;
  const flagFile = values["database-url-file"] as string | undefined;
  if (flagUrl !== undefined && flagFile !== undefined) throw new UsageError("give --database-url or --database-url-file, not both");
  if (flagUrl !== undefined && hasPassword(flagUrl)) {
    process.stderr.write(
      "warning: --database-url carries a password, which any user of this machine can read (ps, /proc): " +
        "set DATABASE_URL, use --database-url-file PATH (or DATABASE_URL_FILE), or leave the password out of the URL " +
        "and set PGPASSWORD or a PGPASSFILE.\n",
    );
  }
  const url = flagUrl ?? (flagFile !== undefined ? readUrlFile(flagFile, "--database-url-file") : undefined) ??
    (process.env.DATABASE_URL || undefined) ??
    (process.env.DATABASE_URL_FILE ? readUrlFile(process.env.DATABASE_URL_FILE, "DATABASE_URL_FILE") : undefined);
  if (!url) {
    throw new UsageError(
      "no database given: set DATABASE_URL (or DATABASE_URL_FILE), or pass --database-url-file PATH or --database-url postgres://user@host:5432/db " +
        "(or run `tributary dev` for an embedded PostgreSQL).",
    );
  }
  return url;
}

function hasPassword(url: string): boolean {
  try {
    const parsed = new URL(url);
    return parsed.password !== "" || parsed.searchParams.has("password");
  } catch {
    return false;
  }
}

/** A file holding the URL (a mounted secret): its first line, surrounding white space ignored. */
function readUrlFile(path: string, source: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`${source} ${path}: cannot read the file (${(error as NodeJS.ErrnoException).code ?? "error"}); it should hold one postgres:// URL`);
  }
  const url = text.trim().split(/\r?\n/)[0]?.trim();
  if (!url) throw new UsageError(`${source} ${path} is empty; it should hold one postgres:// URL`);
  return url;
}

/** "2GB", "500 MB", "1048576": bytes (units of 1024). */
export function parseSize(raw: string, flag: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|TB)?\s*$/i.exec(raw);
  if (!match) throw new UsageError(`${flag} must be a size such as 500MB or 2GB, not '${raw}'`);
  const unit = (match[2] ?? "B").toUpperCase();
  const factor = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }[unit]!;
  return Math.round(Number(match[1]) * factor);
}
