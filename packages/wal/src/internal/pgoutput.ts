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
import { CDC_MESSAGE_PREFIX, MESSAGE_PREFIX, PUBLICATION } from "@tributary/core";
import type { WalMessage } from "./wal-message.ts";
import { withParse } from "./decoder-plugin.ts";
import { PgoutputChangeDecoder } from "./pgoutput-changes.ts";

/** µs between the Unix epoch and PostgreSQL's epoch (2000-01-01). */
const POSTGRES_EPOCH_MICROS = 946_684_800_000_000n;

const BEGIN = 0x42; // 'B'
const MESSAGE = 0x4d; // 'M'
const COMMIT = 0x43; // 'C'

/** "tributary\0": the prefix as it sits in the message, NUL included. */
const PREFIX_BYTES = Buffer.from(`${MESSAGE_PREFIX}\0`, "utf8");
const CDC_PREFIX_BYTES = Buffer.from(`${CDC_MESSAGE_PREFIX}\0`, "utf8");

/**
 * The plugin for one replication session: Begin, Message and Commit are read
 * here; the row changes of captured tables (the publication's tables) by a
 * PgoutputChangeDecoder of this session, which remembers Relation messages.
 */
export function pgoutputPlugin(): PgoutputPlugin {
  const changes = new PgoutputChangeDecoder();
  return withParse(new PgoutputPlugin({ protoVersion: 1, publicationNames: [PUBLICATION], messages: true }), (buffer) => {
    const message = parsePgoutput(buffer);
    if (message !== null || isOwnKind(buffer[0]!)) return message;
    const decoded = changes.decode(buffer);
    return decoded === null ? null : { kind: "change", lsn: 0n, changes: decoded };
  });
}

const isOwnKind = (kind: number): boolean => kind === BEGIN || kind === MESSAGE || kind === COMMIT;

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
      if (prefixEnd + 4 <= buffer.length && buffer.compare(PREFIX_BYTES, 0, PREFIX_BYTES.length, prefixStart, prefixEnd) === 0) {
        return { kind: "message", lsn: buffer.readBigUInt64BE(2), content: contentOf(buffer, prefixEnd) };
      }
      const cdcEnd = prefixStart + CDC_PREFIX_BYTES.length;
      if (cdcEnd + 4 <= buffer.length && buffer.compare(CDC_PREFIX_BYTES, 0, CDC_PREFIX_BYTES.length, prefixStart, cdcEnd) === 0) {
        return { kind: "control", lsn: buffer.readBigUInt64BE(2), content: contentOf(buffer, cdcEnd) };
      }
      return null;
    }
    case COMMIT:
      return { kind: "commit", commitLsn: buffer.readBigUInt64BE(2), endLsn: buffer.readBigUInt64BE(10) };
    default:
      return null;
  }
}

/** The Int32-length-prefixed content that starts at `at`. */
function contentOf(buffer: Buffer, at: number): Buffer {
  const length = buffer.readUInt32BE(at);
  const contentStart = at + 4;
  if (contentStart + length > buffer.length) throw new Error("truncated pgoutput message: content runs past its end");
  return buffer.subarray(contentStart, contentStart + length);
}
