/**
 * The payload of a `tributary` logical message, as written by
 * tributary.append() (migrations/0001_core.sql):
 *
 *   line 1: JSON array [stream, key, partitions, id, type]
 *   line 2: headers as jsonb text (jsonb text never holds a raw newline)
 *   rest:   data as jsonb text
 *
 * Only the short first line is JSON-parsed; headers and data stay text and
 * go back to PostgreSQL as jsonb, so the relay never walks event bodies.
 */
export const MESSAGE_PREFIX = "tributary";

export interface RawEvent {
  readonly stream: string;
  readonly key: string;
  readonly partitions: number;
  readonly id: string;
  readonly type: string;
  readonly headers: string;
  readonly data: string;
}

export function parseEventMessage(content: string): RawEvent {
  const metaEnd = content.indexOf("\n");
  const headersEnd = metaEnd < 0 ? -1 : content.indexOf("\n", metaEnd + 1);
  if (headersEnd < 0) throw new Error(`malformed tributary message (no header lines): ${content.slice(0, 200)}`);
  const meta = JSON.parse(content.slice(0, metaEnd)) as [string, string, number, string, string];
  return {
    stream: meta[0],
    key: meta[1],
    partitions: meta[2],
    id: meta[3],
    type: meta[4],
    headers: content.slice(metaEnd + 1, headersEnd),
    data: content.slice(headersEnd + 1),
  };
}
