/** pgoutput (built into PostgreSQL 10+; logical messages need protocol 1 + `messages 'true'`, PG 14+). */
import { PgoutputPlugin } from "pg-logical-replication";
import { Lsn } from "./lsn.ts";
import { MESSAGE_PREFIX, parseEventMessage } from "./event-message.ts";
import type { WalMessage } from "./wal-message.ts";

export const PUBLICATION = "tributary_relay";

export function pgoutputPlugin(): PgoutputPlugin {
  return new PgoutputPlugin({ protoVersion: 1, publicationNames: [PUBLICATION], messages: true });
}

interface PgoutputMessage {
  tag: string;
  commitLsn?: string | null;
  commitEndLsn?: string | null;
  commitTime?: bigint;
  prefix?: string;
  transactional?: boolean;
  content?: Uint8Array;
}

/** Maps one parsed pgoutput message to a WalMessage, or null for messages we do not read. */
export function fromPgoutput(message: PgoutputMessage): WalMessage | null {
  switch (message.tag) {
    case "begin":
      return { kind: "begin", commitLsn: Lsn.parse(message.commitLsn!), commitTimeMicros: message.commitTime! };
    case "message": {
      // Non-transactional messages are never ours: append() always emits transactional ones.
      if (message.prefix !== MESSAGE_PREFIX || !message.transactional) return null;
      const content = message.content!;
      const text = Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString("utf8");
      return { kind: "event", event: parseEventMessage(text) };
    }
    case "commit":
      return { kind: "commit", commitLsn: Lsn.parse(message.commitLsn!), endLsn: Lsn.parse(message.commitEndLsn!) };
    default:
      return null;
  }
}
