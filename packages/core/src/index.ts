/**
 * @tributary/core — the protocol pieces every Tributary package shares and
 * that import nothing of Tributary's (docs/ARCHITECTURE.md "Packages"): the
 * partitioner, the NOTIFY channels, the advisory lock keys, the signed event
 * message format and the decoder names. Applications use @tributary/client.
 */
export { murmur2, partitionFor } from "./internal/partitioner.ts";
export { EVENTS_CHANNEL, GROUPS_CHANNEL, JOBS_CHANNEL, QUEUE_CHANNEL } from "./internal/notify-channels.ts";
export { GROUP_LOCK, MIGRATE_LOCK, QUEUE_FIFO_LOCK, QUEUE_VACUUM_LOCK, RELAY_CANDIDATE_LOCK, RELAY_LOCK } from "./internal/advisory-locks.ts";
export { isRejection, Keyring, MESSAGE_PREFIX, readEventMessage } from "./internal/event-message.ts";
export type { RawEvent, Rejection, RejectionReason } from "./internal/event-message.ts";
export { CDC_MESSAGE_PREFIX, decoders, PUBLICATION } from "./internal/replication.ts";
export type { Decoder } from "./internal/replication.ts";
export { MetricsEndpointError, oncePerScrape, serveMetrics } from "./internal/metrics-endpoint.ts";
export type { MetricsEndpoint, MetricsEndpointOptions } from "./internal/metrics-endpoint.ts";
