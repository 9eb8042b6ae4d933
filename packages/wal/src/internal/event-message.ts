/**
 * The payload of a `tributary` logical message, as written by
 * tributary.append() (migrations/0001_core.sql):
 *
 *   line 1: JSON array [stream, key, partitions, id, type]
 *   line 2: headers as jsonb text (jsonb text never holds a raw newline)
 *   rest:   data as jsonb text
 *
 * Only the short first line is decoded and JSON-parsed; headers and data stay
 * bytes (views into the message) and go back to PostgreSQL as jsonb text, so
 * the relay never decodes, walks or copies event bodies into JS strings.
 */
export const MESSAGE_PREFIX = "tributary";

export interface RawEvent {
  readonly stream: string;
  readonly key: string;
  readonly partitions: number;
  readonly id: string;
  readonly type: string;
  /**
   * UTF-8 jsonb text. These may be views into a network buffer that is reused
   * once the message is handled: copy them before keeping them.
   */
  readonly headers: Buffer;
  readonly data: Buffer;
}

const NEWLINE = 0x0a;

/** Parses the message content in `bytes[start, end)` (a pgoutput message body, or a whole buffer). */
export function parseEventMessage(bytes: Buffer, start = 0, end = bytes.length): RawEvent {
  const metaEnd = bytes.indexOf(NEWLINE, start);
  const headersEnd = metaEnd < 0 || metaEnd >= end ? -1 : bytes.indexOf(NEWLINE, metaEnd + 1);
  if (headersEnd < 0 || headersEnd >= end) {
    throw new Error(`malformed tributary message (no header lines): ${bytes.toString("utf8", start, Math.min(end, start + 200))}`);
  }
  const meta = JSON.parse(bytes.toString("utf8", start, metaEnd)) as [string, string, number, string, string];
  return {
    stream: meta[0],
    key: meta[1],
    partitions: meta[2],
    id: meta[3],
    type: meta[4],
    headers: bytes.subarray(metaEnd + 1, headersEnd),
    data: bytes.subarray(headersEnd + 1, end),
  };
}
