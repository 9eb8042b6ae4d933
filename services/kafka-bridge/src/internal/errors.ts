/** The bridge's errors a user can hit, with stable string codes. */
export type BridgeErrorCode =
  | "TOPIC_MISSING"
  | "STREAM_MISSING"
  | "KAFKA_UNREACHABLE"
  | "KAFKA_AUTH"
  | "INVALID_CONFIG";

export class BridgeError extends Error {
  override readonly name = "BridgeError";
  constructor(readonly code: BridgeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Errors that will not go away by retrying (bad credentials, missing topic, bad settings). */
export function isFatal(error: unknown): boolean {
  if (error instanceof BridgeError) return error.code !== "KAFKA_UNREACHABLE";
  const e = error as { name?: string; type?: string };
  return e?.name === "KafkaJSSASLAuthenticationError" || e?.type === "SASL_AUTHENTICATION_FAILED" ||
    e?.type === "TOPIC_AUTHORIZATION_FAILED" || e?.type === "CLUSTER_AUTHORIZATION_FAILED";
}

/** Explains a kafkajs error for the log, with what to check. */
export function explainKafkaError(error: unknown): string {
  const e = error as { name?: string; message?: string; type?: string };
  if (e?.name === "KafkaJSSASLAuthenticationError" || e?.type === "SASL_AUTHENTICATION_FAILED") {
    return `Kafka rejected the credentials (${e.message}): check kafka.sasl (mechanism, username and password)`;
  }
  if (/certificate|altnames|self[- ]signed/i.test(e?.message ?? "")) {
    return `Kafka unreachable: its TLS certificate was not accepted (${e.message}): check kafka.ssl.ca (the CA that signed the brokers' certificates) and that kafka.brokers names hosts the certificates are for`;
  }
  if (e?.name === "KafkaJSNumberOfRetriesExceeded" || e?.name === "KafkaJSConnectionError" || e?.name === "KafkaJSNonRetriableError") {
    return `Kafka unreachable (${e.message}): check kafka.brokers and the network`;
  }
  return e?.message ?? String(error);
}
