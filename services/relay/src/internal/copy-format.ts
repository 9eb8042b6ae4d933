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
 * A batch keeps the rows of each stream apart (they go to the stream's own
 * segment table): the chunks start small and double up to the full size, so
 * a batch touching many streams holds about the bytes it carries.
 */

const BACKSLASH = 0x5c;
const TAB = 0x09;
const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/** µs since the Unix epoch → "2026-11-22 04:22:07.172272+00" (timestamptz input). */
export function timestampText(micros: bigint): string {
  const ms = Number(micros / 1000n);
  const fraction = (micros % 1_000_000n).toString().padStart(6, "0");
  const iso = new Date(ms).toISOString(); // 2026-11-22T04:22:07.172Z
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}.${fraction}+00`;
}

/** Up to this many characters or bytes, a field is copied or scanned by a JS loop rather than native calls. */
const SHORT = 64;

const needsEscape = (byte: number): boolean => byte === BACKSLASH || byte === TAB || byte === NEWLINE || byte === CARRIAGE_RETURN;

const escapeByte = (byte: number): number =>
  byte === BACKSLASH ? BACKSLASH : byte === TAB ? 0x74 /* t */ : byte === NEWLINE ? 0x6e /* n */ : 0x72; /* r */

/** Rows of COPY text, one field at a time: `text()` / `bytes()` / `plain()` then `endField()` or `endRow()`. */
export class CopyRows {
  private readonly sealed: Buffer[] = [];
  private sealedBytes = 0;
  private buffer: Buffer;
  private length = 0;
  private nextChunkBytes: number;

  /**
   * chunkBytes: the size chunks grow to (a field larger than that gets a
   * chunk of its own size); firstChunkBytes: the first chunk's, each next one
   * twice the last.
   */
  constructor(private readonly chunkBytes = 256 * 1024, firstChunkBytes = chunkBytes) {
    this.buffer = Buffer.allocUnsafe(Math.min(firstChunkBytes, chunkBytes));
    this.nextChunkBytes = Math.min(this.buffer.length * 2, chunkBytes);
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

  /**
   * Any text, escaped. Short ASCII text (ids, keys, stream names, types) is
   * copied by a loop that escapes as it goes; other text is written as UTF-8
   * and then escaped in place when a native scan finds one of the four bytes
   * (rare: JSON text has them only inside its strings' own escapes). A
   * UTF-16 unit takes at most 3 bytes, escaped or not (the four are one
   * ASCII byte each, two escaped).
   */
  text(text: string): this {
    this.reserve(text.length * 3);
    if (text.length <= SHORT && this.shortAscii(text)) return this;
    const start = this.length;
    this.length += this.buffer.write(text, start, "utf8");
    this.escapeWritten(start);
    return this;
  }

  /** UTF-8 bytes, escaped. */
  bytes(bytes: Buffer): this {
    this.reserve(bytes.length * 2);
    const start = this.length;
    this.buffer.set(bytes, start);
    this.length += bytes.length;
    this.escapeWritten(start);
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

  /** Copies `text` escaped when it is all ASCII (false, having written nothing, when it is not). */
  private shortAscii(text: string): boolean {
    const out = this.buffer;
    let at = this.length;
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code >= 0x80) return false;
      if (needsEscape(code)) {
        out[at++] = BACKSLASH;
        out[at++] = escapeByte(code);
      } else {
        out[at++] = code;
      }
    }
    this.length = at;
    return true;
  }

  /** Escapes, in place, what was written from `start` to the end: room for one more byte per escaped one was reserved. */
  private escapeWritten(start: number): void {
    const out = this.buffer;
    if (this.length - start > SHORT) {
      // Many bytes: four native scans, usually finding nothing, cost less than the loop below (a few: the loop alone).
      const written = out.subarray(start, this.length);
      if (written.indexOf(BACKSLASH) < 0 && written.indexOf(TAB) < 0 && written.indexOf(NEWLINE) < 0 && written.indexOf(CARRIAGE_RETURN) < 0) return;
    }
    let escapes = 0;
    for (let i = start; i < this.length; i++) if (needsEscape(out[i]!)) escapes++;
    if (escapes === 0) return;
    // Back to front: each byte moves right by the escapes before it, never over one not yet moved.
    let to = this.length + escapes;
    for (let from = this.length - 1; from >= start; from--) {
      const byte = out[from]!;
      if (needsEscape(byte)) {
        out[--to] = escapeByte(byte);
        out[--to] = BACKSLASH;
      } else {
        out[--to] = byte;
      }
    }
    this.length += escapes;
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
    this.buffer = Buffer.allocUnsafe(Math.max(bytes, this.nextChunkBytes));
    this.nextChunkBytes = Math.min(this.nextChunkBytes * 2, this.chunkBytes);
    this.length = 0;
  }
}
