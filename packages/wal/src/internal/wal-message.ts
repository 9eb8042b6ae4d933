import type { Lsn } from "./lsn.ts";
import type { RowChange } from "./row-change.ts";

/**
 * What a decoder yields, the same for every output plugin: committed
 * transactions in commit order, each as begin, its `tributary` messages in
 * append order, commit. Transactions are identified by their commit record's
 * LSN (`commitLsn`), known at begin; `endLsn` (the end of the commit record)
 * is the position to acknowledge once the transaction is durably in the
 * stream. A message is only bytes here: whether it is an event (signed by
 * append()) is the relay's to decide (@tributary/core readEventMessage).
 *
 * Table capture adds two kinds, in the same WAL order: `change` (the row
 * changes of one captured-table record, row-change.ts; one, or several for a
 * TRUNCATE of several tables) and `control` (a 'tributary.cdc' message:
 * capture starts and stops, snapshot watermarks; only bytes here too).
 */
export type WalMessage =
  | {
      readonly kind: "begin";
      readonly commitLsn: Lsn;
      readonly commitTimeMicros: bigint;
      /** The transaction's id (32 bits, as the decoders send it). */
      readonly xid: number;
    }
  | {
      readonly kind: "message";
      /** The message record's own LSN. */
      readonly lsn: Lsn;
      /** The content: a view into the network buffer, valid only while the message is handled. */
      readonly content: Buffer;
    }
  | { readonly kind: "commit"; readonly commitLsn: Lsn; readonly endLsn: Lsn }
  | {
      readonly kind: "change";
      /** The change record's LSN (the replication source sets it from the XLogData header). */
      lsn: Lsn;
      readonly changes: readonly RowChange[];
    }
  | {
      readonly kind: "control";
      readonly lsn: Lsn;
      /** A view into the network buffer, valid only while the message is handled. */
      readonly content: Buffer;
    };
