/** Shared flag handling: every command reads DATABASE_URL or --database-url and has --help. */
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

export const databaseUrlOption = { "database-url": { type: "string" } } as const;

export function databaseUrl(values: { "database-url"?: string | boolean | undefined }): string {
  const url = (values["database-url"] as string | undefined) ?? process.env.DATABASE_URL;
  if (!url) {
    throw new UsageError(
      "no database given: set DATABASE_URL or pass --database-url postgres://user@host:5432/db " +
        "(or run `tributary dev` for an embedded PostgreSQL).",
    );
  }
  return url;
}
