/**
 * pg-logical-replication's plugins issue START_REPLICATION with the plugin's
 * options; their parse() runs for every XLogData message, inside the
 * replication socket's data handler. We keep their start() and replace
 * parse() with a decoder to WalMessages.
 */
import type { WalMessage } from "./wal-message.ts";

/**
 * Replaces `plugin.parse` with `decode`. An exception thrown there would
 * escape into the socket's event handler (an uncaught exception), so it is
 * returned instead; ReplicationSource fails the stream with it.
 */
export function withParse<P extends { parse(buffer: Buffer): unknown }>(plugin: P, decode: (buffer: Buffer) => WalMessage | null): P {
  plugin.parse = (buffer: Buffer): WalMessage | Error | null => {
    try {
      return decode(buffer);
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error));
    }
  };
  return plugin;
}
