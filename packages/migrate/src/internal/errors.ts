export type MigrationErrorCode =
  | "MIGRATION_CHANGED"
  | "MIGRATION_FAILED"
  | "WAL_LEVEL_NOT_LOGICAL"
  | "PLUGIN_MISSING"
  | "PLUGIN_NOT_ALLOWED"
  | "SLOT_LOST"
  | "SLOT_IN_OTHER_DATABASE"
  | "SLOT_NOT_READY"
  | "SLOT_PLUGIN_MISMATCH"
  | "SECOND_SLOT";

/** A migration or set-up problem the operator must fix; the message says how. */
export class MigrationError extends Error {
  override readonly name = "MigrationError";
  constructor(
    readonly code: MigrationErrorCode,
    message: string,
  ) {
    super(message);
  }
}
