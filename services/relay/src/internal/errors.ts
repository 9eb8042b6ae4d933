/**
 * The relay's closed set of errors. `retryable` decides whether the relay
 * goes back to waiting and reconnecting, or stops with the message.
 */
export class RelayFencedError extends Error {
  override readonly name = "RelayFencedError";
  readonly retryable = true;
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
