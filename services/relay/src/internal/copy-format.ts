/**
 * Batch rows in PostgreSQL's COPY text format, written straight into one
 * growing buffer as events arrive. Event headers and data arrive as jsonb
 * text bytes (views into the replication socket's buffer) and are copied
 * across with one native scan for the four bytes COPY escapes; they are never
 * decoded into JS strings. This buffer is what goes over the wire.
 */

const NEEDS_ESCAPE = /[\\\t\n\r]/;
const BACKSLASH = 0x5c;
const TAB = 0x09;
const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/** COPY text escaping: backslash, tab, newline and carriage return. */
export function copyEscape(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return value;
  return value.replace(/[\\\t\n\r]/g, (c) => (c === "\\" ? "\\\\" : c === "\t" ? "\\t" : c === "\n" ? "\\n" : "\\r"));
}

/** µs since the Unix epoch → "2026-11-22 04:22:07.172272+00" (timestamptz input). */
export function timestampText(micros: bigint): string {
  const ms = Number(micros / 1000n);
  const fraction = (micros % 1_000_000n).toString().padStart(6, "0");
  const iso = new Date(ms).toISOString(); // 2026-11-22T04:22:07.172Z
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}.${fraction}+00`;
}

const escapeByte = (byte: number): number =>
  byte === BACKSLASH ? BACKSLASH : byte === TAB ? 0x74 /* t */ : byte === NEWLINE ? 0x6e /* n */ : 0x72; /* r */

/** Rows of COPY text, one field at a time: `field()` / `bytes()` / `plain()` then `endField()` or `endRow()`. */
export class CopyRows {
  private buffer: Buffer;
  private length = 0;

  constructor(initialBytes = 64 * 1024) {
    this.buffer = Buffer.allocUnsafe(initialBytes);
  }

  get byteLength(): number {
    return this.length;
  }

  /** Text that cannot need escaping: numbers, timestamps. */
  plain(text: string): this {
    this.reserve(text.length);
    this.length += this.buffer.write(text, this.length, "latin1");
    return this;
  }

  /** Any text, escaped. */
  text(text: string): this {
    const escaped = copyEscape(text);
    this.reserve(escaped.length * 3);
    this.length += this.buffer.write(escaped, this.length, "utf8");
    return this;
  }

  /** UTF-8 bytes, escaped. */
  bytes(bytes: Buffer): this {
    this.reserve(bytes.length * 2);
    if (
      bytes.indexOf(BACKSLASH) < 0 && bytes.indexOf(TAB) < 0 &&
      bytes.indexOf(NEWLINE) < 0 && bytes.indexOf(CARRIAGE_RETURN) < 0
    ) {
      this.buffer.set(bytes, this.length);
      this.length += bytes.length;
      return this;
    }
    const out = this.buffer;
    let at = this.length;
    for (let i = 0; i < bytes.length; i++) {
      const byte = bytes[i]!;
      if (byte === BACKSLASH || byte === TAB || byte === NEWLINE || byte === CARRIAGE_RETURN) {
        out[at++] = BACKSLASH;
        out[at++] = escapeByte(byte);
      } else {
        out[at++] = byte;
      }
    }
    this.length = at;
    return this;
  }

  /** Text or UTF-8 bytes, escaped. */
  content(value: string | Buffer): this {
    return typeof value === "string" ? this.text(value) : this.bytes(value);
  }

  endField(): this {
    return this.byte(TAB);
  }

  endRow(): this {
    return this.byte(NEWLINE);
  }

  /** The rows written so far (a view: write nothing more once taken). */
  view(): Buffer {
    return this.buffer.subarray(0, this.length);
  }

  private byte(value: number): this {
    this.reserve(1);
    this.buffer[this.length++] = value;
    return this;
  }

  private reserve(bytes: number): void {
    const needed = this.length + bytes;
    if (needed <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(needed, this.buffer.length * 2));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }
}
