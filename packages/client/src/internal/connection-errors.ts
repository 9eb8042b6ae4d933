/**
 * Which database errors a long-running reader retries and which stop it.
 *
 * Retry what can heal by itself: the server is down, restarting, or dropped
 * this connection (an administrator's pg_terminate_backend, a failover, a
 * network reset). Stop on what cannot: wrong credentials, a database or
 * table that does not exist, missing privileges, input the schema refuses.
 * Anything else is neither: callers decide (a reader stops on it rather than
 * guess).
 */

/** Network-level errors (Node's errno codes and postgres.js's own connection codes). */
const transientNetworkCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EAI_AGAIN",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
]);

/**
 * SQLSTATEs that stop a reader: authentication (28xxx), unknown database
 * (3D000) or schema (3F000), insufficient privilege (42501), undefined table
 * or function (42P01, 42883: Tributary is not migrated there), and refused
 * input (22023: Tributary's validation rules; 23514: a check constraint).
 */
const permanentSqlStates = new Set(["28000", "28P01", "3D000", "3F000", "42501", "42P01", "42883", "22023", "23514"]);

/** Server shutting down or restarting, or this session terminated (57P01-57P03), or too many connections (53300). */
const transientSqlStates = new Set(["57P01", "57P02", "57P03", "53300", "08000", "08003", "08006", "08001", "08004"]);

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** True when retrying cannot help (see the module comment). */
export function isPermanentDatabaseError(error: unknown): boolean {
  const code = codeOf(error);
  return code !== undefined && permanentSqlStates.has(code);
}

/** True for a lost or refused connection, or a server shutting down or restarting. */
export function isConnectionError(error: unknown): boolean {
  const code = codeOf(error);
  return code !== undefined && (transientNetworkCodes.has(code) || transientSqlStates.has(code));
}
