import type { Lsn } from "./lsn.ts";
import type { RawEvent } from "./event-message.ts";

/**
 * What a decoder yields, the same for every output plugin: committed
 * transactions in commit order, each as begin, its events in append order,
 * commit. Transactions are identified by their commit record's LSN
 * (`commitLsn`), known at begin; `endLsn` (the end of the commit record) is
 * the position to acknowledge once the transaction is durably in the stream.
 */
export type WalMessage =
  | { readonly kind: "begin"; readonly commitLsn: Lsn; readonly commitTimeMicros: bigint }
  | { readonly kind: "event"; readonly event: RawEvent }
  | { readonly kind: "commit"; readonly commitLsn: Lsn; readonly endLsn: Lsn };
