/** What is wrong with a database URL or the files it names; the message says how to fix it. */
export type DatabaseUrlErrorCode = "INVALID_URL" | "INVALID_SSLMODE" | "UNREADABLE_FILE" | "NO_ROOT_CERT" | "PASSFILE_PERMISSIONS";

export class DatabaseUrlError extends Error {
  override readonly name = "DatabaseUrlError";
  constructor(
    readonly code: DatabaseUrlErrorCode,
    message: string,
  ) {
    super(message);
  }
}
