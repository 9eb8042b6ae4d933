/**
 * @tributary/core — the protocol pieces every Tributary package shares and
 * that import nothing of Tributary's (docs/ARCHITECTURE.md "Packages"): the
 * partitioner, the signed event message format and the decoder names.
 * Applications use @tributary/client.
 */
export { murmur2, partitionFor } from "./internal/partitioner.ts";
export { isRejection, Keyring, MESSAGE_PREFIX, readEventMessage } from "./internal/event-message.ts";
export type { RawEvent, Rejection, RejectionReason } from "./internal/event-message.ts";
export { decoders, PUBLICATION } from "./internal/replication.ts";
export type { Decoder } from "./internal/replication.ts";
