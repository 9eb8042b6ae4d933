/**
 * @tributary/wal — reading Tributary's messages out of the WAL: LSNs, the
 * pgoutput and wal2json decoders behind one WalMessage shape, the row changes
 * of captured tables behind one RowChange shape, and the
 * replication connection with owned acknowledgements. The event message
 * format they carry is @tributary/core's.
 */
export { Lsn } from "./internal/lsn.ts";
export type { WalMessage } from "./internal/wal-message.ts";
export { parsePgoutput } from "./internal/pgoutput.ts";
export { fromWal2json, timestampMicros } from "./internal/wal2json.ts";
export type { ColumnValue, RowChange } from "./internal/row-change.ts";
export { PgoutputChangeDecoder } from "./internal/pgoutput-changes.ts";
export { fromWal2jsonChange } from "./internal/wal2json-changes.ts";
export { ReplicationSource } from "./internal/replication-source.ts";
export type { ReplicationHandler, ReplicationSourceOptions } from "./internal/replication-source.ts";
