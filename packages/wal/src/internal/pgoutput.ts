/**
 * pgoutput (built into PostgreSQL 10+; logical messages need protocol 1 +
 * `messages 'true'`, PG 14+), read straight from the XLogData bytes.
 *
 * We only ever read three message types — Begin, Message and Commit — from an
 * empty publication, so instead of pg-logical-replication's general parser
 * (an object, hex LSN strings and decoded strings per message) this plugin
 * decodes those three in place: LSNs as bigints, a message's content as a
 * view into the network buffer. Everything else is ignored. START_REPLICATION
 * is still issued by the library's plugin.
 *
 * Layouts (protocol version 1, https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html):
 *   'B' Int64 final (commit) LSN, Int64 commit time (µs since 2000-01-01), Int32 xid
 *   'M' Int8 flags (1 = transactional), Int64 message LSN, String prefix, Int32 n, Byte[n] content
 *   'C' Int8 flags, Int64 commit LSN, Int64 end LSN, Int64 commit time
 */
import { PgoutputPlugin } from "pg-logical-replication";
import { MESSAGE_PREFIX, PUBLICATION } from "@tributary/core";
import type { WalMessage } from "./wal-message.ts";
import { withParse } from "./decoder-plugin.ts";

/** µs between the Unix epoch and PostgreSQL's epoch (2000-01-01). */
const POSTGRES_EPOCH_MICROS = 946_684_800_000_000n;

const BEGIN = 0x42; // 'B'
const MESSAGE = 0x4d; // 'M'
const COMMIT = 0x43; // 'C'

/** "tributary\0": the prefix as it sits in the message, NUL included. */
const PREFIX_BYTES = Buffer.from(`${MESSAGE_PREFIX}\0`, "utf8");

export function pgoutputPlugin(): PgoutputPlugin {
  return withParse(new PgoutputPlugin({ protoVersion: 1, publicationNames: [PUBLICATION], messages: true }), parsePgoutput);
}

/** Decodes one pgoutput message body, or null for messages that are not ours to read. */
export function parsePgoutput(buffer: Buffer): WalMessage | null {
  switch (buffer[0]) {
    case BEGIN:
      return {
        kind: "begin",
        commitLsn: buffer.readBigUInt64BE(1),
        commitTimeMicros: buffer.readBigInt64BE(9) + POSTGRES_EPOCH_MICROS,
        xid: buffer.readUInt32BE(17),
      };
    case MESSAGE: {
      // Non-transactional messages are never ours: append() always emits transactional ones.
      if ((buffer[1]! & 1) === 0) return null;
      const prefixStart = 10;
      const prefixEnd = prefixStart + PREFIX_BYTES.length;
      // Any role can emit a message with any prefix: a short one must not read past the buffer.
      if (prefixEnd + 4 > buffer.length || buffer.compare(PREFIX_BYTES, 0, PREFIX_BYTES.length, prefixStart, prefixEnd) !== 0) return null;
      const length = buffer.readUInt32BE(prefixEnd);
      const contentStart = prefixEnd + 4;
      if (contentStart + length > buffer.length) throw new Error("truncated pgoutput message: content runs past its end");
      return { kind: "message", lsn: buffer.readBigUInt64BE(2), content: buffer.subarray(contentStart, contentStart + length) };
    }
    case COMMIT:
      return { kind: "commit", commitLsn: buffer.readBigUInt64BE(2), endLsn: buffer.readBigUInt64BE(10) };
    default:
      return null;
  }
}
