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
 * messages are sent whatever the publication, and the stream table must
 * never be in a publication the relay reads (docs/ARCHITECTURE.md "Known
 * traps").
 */
export const PUBLICATION = "tributary_relay";
