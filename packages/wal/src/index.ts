/**
 * @tributary/wal — reading Tributary's events out of the WAL: LSNs, the event
 * message format, the pgoutput and wal2json decoders behind one WalMessage
 * shape, and the replication connection with owned acknowledgements.
 */
export { Lsn } from "./internal/lsn.ts";
export { isRejection, Keyring, MESSAGE_PREFIX, readEventMessage } from "./internal/event-message.ts";
export type { RawEvent, Rejection, RejectionReason } from "./internal/event-message.ts";
export type { WalMessage } from "./internal/wal-message.ts";
export { parsePgoutput, PUBLICATION } from "./internal/pgoutput.ts";
export { fromWal2json, timestampMicros } from "./internal/wal2json.ts";
export { ReplicationSource } from "./internal/replication-source.ts";
export type { DecoderName, ReplicationHandler, ReplicationSourceOptions } from "./internal/replication-source.ts";
