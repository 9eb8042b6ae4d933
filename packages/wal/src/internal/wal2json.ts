/** wal2json format-version 2 (a separately installed output plugin). */
import { Wal2JsonPlugin } from "pg-logical-replication";
import { CDC_MESSAGE_PREFIX, MESSAGE_PREFIX } from "@tributary/core";
import { Lsn } from "./lsn.ts";
import type { WalMessage } from "./wal-message.ts";
import { withParse } from "./decoder-plugin.ts";
import { fromWal2jsonChange } from "./wal2json-changes.ts";

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

export interface Wal2jsonSessionOptions {
  /**
   * Whether any table is captured. wal2json has no publication: without
   * captures it sends no table's changes (events travel as logical messages);
   * with captures it sends every table's but Tributary's own (the relay's
   * inserts into the stream table would double the traffic), and the relay
   * keeps the captured ones.
   */
  readonly captures: boolean;
}

export function wal2jsonPlugin(options: Wal2jsonSessionOptions = { captures: false }): Wal2JsonPlugin {
  const plugin = new Wal2JsonPlugin({
    formatVersion: "2",
    includeLsn: true,
    includeTimestamp: true,
    includeTransaction: true,
    includeXids: true,
    includeTypeOids: true,
    filterTables: options.captures ? "tributary.*" : "*.*",
  } as never);
  return withParse(plugin, (buffer) => {
    const text = buffer.toString("utf8");
    const change = fromWal2jsonChange(text);
    if (change !== null) return { kind: "change", lsn: 0n, changes: [change] };
    return fromWal2json(JSON.parse(text) as Wal2JsonRecord);
  });
}

export function fromWal2json(record: Wal2JsonRecord): WalMessage | null {
  switch (record.action) {
    case "B":
      return { kind: "begin", commitLsn: Lsn.parse(record.lsn!), commitTimeMicros: timestampMicros(record.timestamp!), xid: record.xid! };
    case "M":
      if (!record.transactional) return null;
      if (record.prefix === MESSAGE_PREFIX) return { kind: "message", lsn: record.lsn ? Lsn.parse(record.lsn) : 0n, content: Buffer.from(record.content!, "utf8") };
      if (record.prefix === CDC_MESSAGE_PREFIX) return { kind: "control", lsn: record.lsn ? Lsn.parse(record.lsn) : 0n, content: Buffer.from(record.content!, "utf8") };
      return null;
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
