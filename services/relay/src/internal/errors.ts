/**
 * The relay's closed set of errors. `retryable` decides whether the relay
 * goes back to waiting and reconnecting, or stops with the message: only
 * what can heal (the server down or restarting, a dropped connection, a
 * takeover) is retried; set-up errors an operator must fix stop the relay.
 */
import type { EntryId } from "./relay-state.ts";

export class RelayFencedError extends Error {
  override readonly name = "RelayFencedError";
  readonly retryable = true;
}

/** A batch write did not finish in time: the session ends, its connections are closed. */
export class BatchWriteTimeoutError extends Error {
  override readonly name = "BatchWriteTimeoutError";
  readonly retryable = true;
}

/**
 * The stream table refused a batch because of its data (invariant 13): the
 * next session writes one entry per batch through `last` to find the entry
 * it refuses, and sets that one aside.
 */
export class BatchRefusedError extends Error {
  override readonly name = "BatchRefusedError";
  readonly retryable = true;
  constructor(
    readonly first: EntryId,
    readonly last: EntryId,
    /** The database's error, e.g. `index row size 6432 exceeds ... (54000)`. */
    readonly reason: string,
  ) {
    super(`the stream table refused a batch: ${reason}`);
  }
}

/** Configuration or data-loss conditions an operator must fix; the relay stops. */
export class RelayFatalError extends Error {
  override readonly name = "RelayFatalError";
  readonly retryable = false;
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function isRetryable(error: unknown): boolean {
  if (error instanceof RelayFatalError) return false;
  const e = error as { code?: string; name?: string };
  if (e?.name === "MigrationError") return false;
  return true;
}

/**
 * SQLSTATE classes of errors caused by a row's content (data exception,
 * integrity constraint, program limit such as an index row too large) or
 * raised by a trigger an operator added to the stream table.
 */
export function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" && /^(22|23|54)...$|^P0001$/.test(code);
}

/**
 * Errors of connecting or of the relay's own queries that no retry can heal,
 * as a RelayFatalError with what to do; anything else is returned unchanged.
 */
/** Node's codes for a server certificate that verification refused (sslmode=verify-ca / verify-full). */
const TLS_VERIFY_CODES = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID", "CERT_SIGNATURE_FAILURE", "ERR_TLS_CERT_ALTNAME_INVALID",
]);

export function fatalSetupError(error: unknown, context: { slotName: string }): unknown {
  const e = error as { code?: string; message?: string };
  const message = e?.message ?? String(error);
  if (e?.code && TLS_VERIFY_CODES.has(e.code)) {
    return new RelayFatalError("TLS", `the server's certificate was refused (${e.code}: ${message}): check sslrootcert (the CA that signed it) and that the host in the database URL is a name the certificate holds.`);
  }
  if (e?.code === "0A000" && /row-level security/.test(message)) {
    return new RelayFatalError("NO_BYPASSRLS", `${message}: the relay writes tributary.events, which row-level security guards for readers. Its login role needs BYPASSRLS (ALTER ROLE <role> BYPASSRLS); see README "Security".`);
  }
  switch (e?.code) {
    case "28P01":
    case "28000":
      return new RelayFatalError("AUTHENTICATION", `the database refused the relay's login: ${message}. Check the user and password in the database URL (or the password file) and pg_hba.conf.`);
    case "3D000":
      return new RelayFatalError("NO_DATABASE", `${message}: check the database name in the database URL.`);
    case "42501":
      if (/replication|WAL sender|walsender/i.test(message)) {
        return new RelayFatalError("NO_REPLICATION", `${message}: the relay's login role needs the REPLICATION attribute (ALTER ROLE <role> REPLICATION), a pg_hba.conf entry allowing it, and membership in tributary_relay.`);
      }
      return new RelayFatalError("PERMISSION", `${message}: the relay's role lacks a privilege on Tributary's schema. Grant it the tributary_relay role (GRANT tributary_relay TO <role>), see README "Security".`);
    case "42P01":
    case "3F000":
    case "42883":
      return new RelayFatalError("NOT_MIGRATED", `${message}: the tributary schema is missing or older than this relay. Run migrate() (@tributary/migrate) first (slot '${context.slotName}').`);
    default:
      return error;
  }
}
