/**
 * The closed set of errors `append` can raise for bad input. The SQL API
 * raises SQLSTATE 22023 with the rule's name as the constraint name; we map
 * that to a stable string code (postgres.js style).
 */
export type AppendErrorCode =
  | "INVALID_STREAM_NAME"
  | "INVALID_KEY"
  | "KEY_TOO_LARGE"
  | "INVALID_TYPE"
  | "TYPE_TOO_LARGE"
  | "INVALID_DATA"
  | "DATA_TOO_LARGE"
  | "DATA_TOO_DEEP"
  | "INVALID_HEADERS"
  | "HEADERS_TOO_LARGE"
  | "HEADERS_TOO_DEEP"
  | "INVALID_PARTITIONS"
  | "INVALID_BATCH"
  | "INVALID_SETTING";

const constraintCodes: Record<string, AppendErrorCode> = {
  tributary_stream_name: "INVALID_STREAM_NAME",
  tributary_key: "INVALID_KEY",
  tributary_key_size: "KEY_TOO_LARGE",
  tributary_type: "INVALID_TYPE",
  tributary_type_size: "TYPE_TOO_LARGE",
  tributary_data: "INVALID_DATA",
  tributary_data_size: "DATA_TOO_LARGE",
  tributary_data_depth: "DATA_TOO_DEEP",
  tributary_headers: "INVALID_HEADERS",
  tributary_headers_size: "HEADERS_TOO_LARGE",
  tributary_headers_depth: "HEADERS_TOO_DEEP",
  tributary_partitions: "INVALID_PARTITIONS",
  tributary_batch_shape: "INVALID_BATCH",
  tributary_limit: "INVALID_SETTING",
};

export class TributaryInputError extends Error {
  override readonly name = "TributaryInputError";
  constructor(
    readonly code: AppendErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Turns a PostgreSQL error raised by a tributary.* rule into a TributaryInputError. */
export function translateError(error: unknown): unknown {
  const e = error as { code?: string; constraint_name?: string; message?: string; hint?: string };
  const code = e?.code === "22023" && e.constraint_name ? constraintCodes[e.constraint_name] : undefined;
  if (!code) return error;
  const message = e.hint ? `${e.message} (${e.hint})` : e.message ?? code;
  return new TributaryInputError(code, message, { cause: error });
}
