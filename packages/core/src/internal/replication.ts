/**
 * What the replication slot and the relay agree on: the logical decoding
 * plugins Tributary reads (migrate creates the slot with one, the relay reads
 * with the slot's) and the publication pgoutput is started with.
 */

/** The output plugins Tributary decodes (packages/wal pgoutput.ts, wal2json.ts). */
export type Decoder = "pgoutput" | "wal2json";

export const decoders: readonly Decoder[] = ["pgoutput", "wal2json"];

/**
 * The publication pgoutput reads, created empty by migration 0001: logical
 * messages are sent whatever the publication. It holds the captured tables
 * (tributary.capture() adds them, migration 0009), never the stream table,
 * which would feed itself (docs/ARCHITECTURE.md "Known traps").
 */
export const PUBLICATION = "tributary_relay";

/**
 * The prefix of table capture's own logical messages (migration 0009): a
 * capture's start and stop, a backfill's request, and the relay's snapshot
 * watermarks. Like any prefix, it proves nothing about who wrote a message.
 */
export const CDC_MESSAGE_PREFIX = "tributary.cdc";
