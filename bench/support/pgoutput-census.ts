/**
 * What pg_recvlogical received from pgoutput (protocol version 1), counted
 * message by message from its output file: pg_recvlogical writes each
 * message's bytes followed by a newline. bench:cdc uses it to show that the
 * decode limit it measures really carries the row changes (a publication
 * without the table would stream only Begin and Commit, and fast).
 *
 * Layouts: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 */
import { readFileSync } from "node:fs";

export interface PgoutputCensus {
  readonly bytes: number;
  readonly messages: number;
  /** Messages per kind letter ('B', 'C', 'R', 'I', 'U', 'D', 'M', ...). */
  readonly byKind: ReadonlyMap<string, number>;
  /** Bytes of Insert, Update and Delete messages. */
  readonly changeBytes: number;
}

class Cursor {
  at = 0;
  constructor(private readonly buffer: Buffer) {}

  skip(bytes: number): void {
    if (this.at + bytes > this.buffer.length) throw new Error(`pgoutput census: truncated message at byte ${this.at}`);
    this.at += bytes;
  }

  byte(): number {
    this.skip(1);
    return this.buffer[this.at - 1]!;
  }

  int16(): number {
    this.skip(2);
    return this.buffer.readInt16BE(this.at - 2);
  }

  int32(): number {
    this.skip(4);
    return this.buffer.readInt32BE(this.at - 4);
  }

  string(): void {
    const end = this.buffer.indexOf(0, this.at);
    if (end < 0) throw new Error(`pgoutput census: unterminated string at byte ${this.at}`);
    this.at = end + 1;
  }

  tuple(): void {
    const columns = this.int16();
    for (let i = 0; i < columns; i++) {
      const kind = this.byte();
      if (kind === 0x74 /* t */ || kind === 0x62 /* b */) this.skip(this.int32());
      else if (kind !== 0x6e /* n */ && kind !== 0x75 /* u */) throw new Error(`pgoutput census: tuple column of kind ${kind} at byte ${this.at - 1}`);
    }
  }
}

/** Walks one message body from its kind byte; leaves the cursor after it. */
function skipMessage(c: Cursor, kind: string): void {
  switch (kind) {
    case "B":
      return c.skip(20);
    case "C":
      return c.skip(25);
    case "O":
      c.skip(8);
      return c.string();
    case "M": {
      c.skip(9);
      c.string();
      return c.skip(c.int32());
    }
    case "R": {
      c.skip(4);
      c.string();
      c.string();
      c.skip(1);
      const columns = c.int16();
      for (let i = 0; i < columns; i++) {
        c.skip(1);
        c.string();
        c.skip(8);
      }
      return;
    }
    case "Y":
      c.skip(4);
      c.string();
      return c.string();
    case "I":
      c.skip(5); // oid, 'N'
      return c.tuple();
    case "U": {
      c.skip(4);
      const marker = c.byte();
      if (marker === 0x4b /* K */ || marker === 0x4f /* O */) {
        c.tuple();
        c.skip(1); // 'N'
      }
      return c.tuple();
    }
    case "D":
      c.skip(5); // oid, 'K' | 'O'
      return c.tuple();
    case "T": {
      const relations = c.int32();
      return c.skip(1 + 4 * relations);
    }
    default:
      throw new Error(`pgoutput census: message of kind '${kind}' at byte ${c.at - 1}`);
  }
}

export function pgoutputCensus(path: string): PgoutputCensus {
  const buffer = readFileSync(path);
  const c = new Cursor(buffer);
  const byKind = new Map<string, number>();
  let messages = 0;
  let changeBytes = 0;
  while (c.at < buffer.length) {
    const start = c.at;
    const kind = String.fromCharCode(c.byte());
    skipMessage(c, kind);
    if (kind === "I" || kind === "U" || kind === "D") changeBytes += c.at - start;
    if (c.byte() !== 0x0a) throw new Error(`pgoutput census: message '${kind}' at byte ${start} is not followed by pg_recvlogical's newline`);
    byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
    messages++;
  }
  return { bytes: buffer.length, messages, byKind, changeBytes };
}
