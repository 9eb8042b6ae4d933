/**
 * Batch rows in PostgreSQL's COPY text format, written straight into buffers
 * as events arrive. Event headers and data arrive as jsonb text bytes (views
 * into the replication socket's buffer) and are copied across with one native
 * scan for the four bytes COPY escapes; they are never decoded into JS
 * strings. These buffers are what goes over the wire.
 *
 * The rows fill fixed-size chunks, not one growing buffer: a batch of a few
 * MB is never copied to grow, and each chunk goes out as its own CopyData
 * message (the COPY stream is bytes: a row may span two messages), so the
 * driver frames 256 kB at a time instead of concatenating the whole batch.
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

/** Rows of COPY text, one field at a time: `text()` / `bytes()` / `plain()` then `endField()` or `endRow()`. */
export class CopyRows {
  private readonly sealed: Buffer[] = [];
  private sealedBytes = 0;
  private buffer: Buffer;
  private length = 0;

  /** chunkBytes: the size of each chunk (a field larger than that gets a chunk of its own size). */
  constructor(private readonly chunkBytes = 256 * 1024) {
    this.buffer = Buffer.allocUnsafe(chunkBytes);
  }

  get byteLength(): number {
    return this.sealedBytes + this.length;
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

  /** The rows written so far, in order, as views of the chunks (write nothing more once taken). */
  chunks(): Buffer[] {
    return this.length === 0 ? [...this.sealed] : [...this.sealed, this.buffer.subarray(0, this.length)];
  }

  private byte(value: number): this {
    this.reserve(1);
    this.buffer[this.length++] = value;
    return this;
  }

  /** Room for `bytes` more in the current chunk: else it is sealed and a new one begins (a field never spans two). */
  private reserve(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    if (this.length > 0) {
      this.sealed.push(this.buffer.subarray(0, this.length));
      this.sealedBytes += this.length;
    }
    this.buffer = Buffer.allocUnsafe(Math.max(bytes, this.chunkBytes));
    this.length = 0;
  }
}
