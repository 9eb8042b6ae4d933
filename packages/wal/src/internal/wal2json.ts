/** wal2json format-version 2 (a separately installed output plugin). */
import { Wal2JsonPlugin } from "pg-logical-replication";
import { MESSAGE_PREFIX } from "@tributary/core";
import { Lsn } from "./lsn.ts";
import type { WalMessage } from "./wal-message.ts";
import { withParse } from "./decoder-plugin.ts";

interface Wal2JsonRecord {
  action: string;
  lsn?: string;
  nextlsn?: string;
  timestamp?: string;
  xid?: number;
  transactional?: boolean;
  prefix?: string;
  content?: string;
}

export function wal2jsonPlugin(): Wal2JsonPlugin {
  const plugin = new Wal2JsonPlugin({
    formatVersion: "2",
    includeLsn: true,
    includeTimestamp: true,
    includeTransaction: true,
    includeXids: true,
    // Events travel as logical messages; no table change is ours to read, and
    // reading the relay's own inserts would double the traffic.
    filterTables: "*.*",
  } as never);
  const parseJson = plugin.parse.bind(plugin);
  return withParse(plugin, (buffer) => fromWal2json(parseJson(buffer) as Wal2JsonRecord));
}

export function fromWal2json(record: Wal2JsonRecord): WalMessage | null {
  switch (record.action) {
    case "B":
      return { kind: "begin", commitLsn: Lsn.parse(record.lsn!), commitTimeMicros: timestampMicros(record.timestamp!), xid: record.xid! };
    case "M":
      if (record.prefix !== MESSAGE_PREFIX || !record.transactional) return null;
      return { kind: "message", lsn: record.lsn ? Lsn.parse(record.lsn) : 0n, content: Buffer.from(record.content!, "utf8") };
    case "C":
      return { kind: "commit", commitLsn: Lsn.parse(record.lsn!), endLsn: Lsn.parse(record.nextlsn!) };
    default:
      return null;
  }
}

/** "2026-11-22 04:22:07.172272+00" (any offset, 0-6 fraction digits) → µs since the Unix epoch. */
export function timestampMicros(text: string): bigint {
  const m = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?([+-]\d{2})(?::?(\d{2}))?$/.exec(text);
  if (!m) throw new Error(`unexpected wal2json timestamp: ${text}`);
  const offset = `${m[4]}:${m[5] ?? "00"}`;
  const seconds = BigInt(Date.parse(`${m[1]}T${m[2]}${offset}`) / 1000);
  return seconds * 1_000_000n + BigInt((m[3] ?? "").padEnd(6, "0"));
}
