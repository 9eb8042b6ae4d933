/**
 * libpq's password file (PGPASSFILE, default ~/.pgpass): lines of
 * `host:port:database:user:password`, `*` matching anything, `\:` and `\\`
 * escaping; the first matching line wins. Like libpq, a file that group or
 * others can read is not used: we refuse it with the fix rather than ignore it
 * silently. The password never appears in an error.
 */
import { readFileSync, statSync } from "node:fs";
import { TributaryConnectionError } from "../errors.ts";

export interface PassFileKey {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
}

/** The password for `key` in the file at `path`, or undefined (no file, no match). `explicit`: the path came from PGPASSFILE. */
export function passwordFromPassFile(path: string, key: PassFileKey, explicit: boolean): string | undefined {
  let mode: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) return undefined;
    mode = stat.mode;
  } catch {
    if (explicit) throw new TributaryConnectionError("UNREADABLE_FILE", `PGPASSFILE=${path}: the password file does not exist`);
    return undefined;
  }
  if (process.platform !== "win32" && (mode & 0o077) !== 0) {
    throw new TributaryConnectionError("PASSFILE_PERMISSIONS", `the password file ${path} can be read by group or others: chmod 600 ${path}`);
  }
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new TributaryConnectionError("UNREADABLE_FILE", `the password file ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  const wanted = [key.host, String(key.port), key.database, key.user];
  for (const line of text.split(/\r?\n/)) {
    if (line === "" || line.startsWith("#")) continue;
    const fields = splitFields(line);
    if (fields.length < 5) continue;
    if (wanted.every((value, i) => fields[i] === "*" || fields[i] === value)) {
      return fields[4];
    }
  }
  return undefined;
}

function splitFields(line: string): string[] {
  const fields: string[] = [];
  let current = "";
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "\\" && i + 1 < line.length) current += line[++i];
    else if (c === ":" && fields.length < 4) {
      fields.push(current);
      current = "";
    } else current += c;
  }
  fields.push(current);
  return fields;
}
