/**
 * The payload of a `tributary` logical message, as written by
 * tributary.append() (migrations/0006_trusted_append.sql):
 *
 *   line 0: "tributary-v1 <key id> <hex HMAC-SHA256 of the bytes after line 0>"
 *   line 1: JSON array [stream, key, partitions, id, type]
 *   line 2: headers as jsonb text (jsonb text never holds a raw newline)
 *   rest:   data as jsonb text
 *
 * Trust (docs/ARCHITECTURE.md invariant 12): any role can emit a message
 * with the 'tributary' prefix, so a message becomes an event only when its
 * signature verifies under a key of tributary.signing_keys, which only
 * append() (SECURITY DEFINER) and the relay can read. Anything else is a
 * Rejection the relay sets aside (invariant 13), never an error that stops it.
 *
 * Only the short first lines are decoded and JSON-parsed; headers and data
 * stay bytes (views into the message) and go back to PostgreSQL as jsonb
 * text, so the relay never decodes, walks or copies event bodies into JS
 * strings.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

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

export type RejectionReason = "unsigned" | "unknown_key" | "bad_signature" | "malformed";

/** A committed message that cannot become an event, and why. */
export interface Rejection {
  readonly reason: RejectionReason;
  readonly detail: string;
  /** Read from the message when it parsed, for the operator (never trusted). */
  readonly stream?: string;
  readonly id?: string;
}

/** The signing keys of tributary.signing_keys, by id. */
export class Keyring {
  private readonly keys = new Map<number, Buffer>();

  constructor(keys: Iterable<{ id: number; secret: Buffer }>) {
    for (const k of keys) this.keys.set(k.id, k.secret);
  }

  get(id: number): Buffer | undefined {
    return this.keys.get(id);
  }

  get size(): number {
    return this.keys.size;
  }
}

const NEWLINE = 0x0a;
const SIGNATURE_TAG = "tributary-v1 ";
const SIGNATURE_TAG_BYTES = Buffer.from(SIGNATURE_TAG, "latin1");
const HMAC_HEX_LENGTH = 64;

const preview = (bytes: Buffer, start: number, end: number) => JSON.stringify(bytes.toString("utf8", start, Math.min(end, start + 120)));

/**
 * Verifies and parses the message content in `bytes[start, end)`: the event,
 * or why it is not one. Never throws.
 */
export function readEventMessage(keyring: Keyring, bytes: Buffer, start = 0, end = bytes.length): RawEvent | Rejection {
  const lineEnd = bytes.indexOf(NEWLINE, start);
  if (
    lineEnd < 0 || lineEnd >= end || lineEnd - start < SIGNATURE_TAG_BYTES.length ||
    bytes.compare(SIGNATURE_TAG_BYTES, 0, SIGNATURE_TAG_BYTES.length, start, start + SIGNATURE_TAG_BYTES.length) !== 0
  ) {
    return { reason: "unsigned", detail: `no signature line: the message was not written by tributary.append(); it begins ${preview(bytes, start, end)}` };
  }
  const signatureLine = bytes.toString("latin1", start + SIGNATURE_TAG_BYTES.length, lineEnd);
  const space = signatureLine.indexOf(" ");
  const keyId = Number(signatureLine.slice(0, space));
  const mac = signatureLine.slice(space + 1);
  if (space < 1 || !Number.isInteger(keyId) || mac.length !== HMAC_HEX_LENGTH || !/^[0-9a-f]+$/.test(mac)) {
    return { reason: "unsigned", detail: `malformed signature line ${JSON.stringify(signatureLine.slice(0, 100))}` };
  }
  const secret = keyring.get(keyId);
  if (!secret) {
    return { reason: "unknown_key", detail: `signed with key ${keyId}, which is not in tributary.signing_keys` };
  }
  const expected = createHmac("sha256", secret).update(bytes.subarray(lineEnd + 1, end)).digest();
  if (!timingSafeEqual(expected, Buffer.from(mac, "hex"))) {
    return { reason: "bad_signature", detail: `the signature does not match the content under key ${keyId}: forged or altered` };
  }
  return parsePayload(bytes, lineEnd + 1, end);
}

/** The signed payload (lines 1..): meta, headers, data. */
function parsePayload(bytes: Buffer, start: number, end: number): RawEvent | Rejection {
  const metaEnd = bytes.indexOf(NEWLINE, start);
  const headersEnd = metaEnd < 0 || metaEnd >= end ? -1 : bytes.indexOf(NEWLINE, metaEnd + 1);
  if (headersEnd < 0 || headersEnd >= end) {
    return { reason: "malformed", detail: `no header lines: ${preview(bytes, start, end)}` };
  }
  let meta: unknown;
  try {
    meta = JSON.parse(bytes.toString("utf8", start, metaEnd));
  } catch (error) {
    return { reason: "malformed", detail: `the first line is not JSON (${(error as Error).message}): ${preview(bytes, start, metaEnd)}` };
  }
  if (
    !Array.isArray(meta) || meta.length !== 5 || typeof meta[0] !== "string" || typeof meta[1] !== "string" ||
    !Number.isInteger(meta[2]) || meta[2] < 1 || typeof meta[3] !== "string" || typeof meta[4] !== "string"
  ) {
    return { reason: "malformed", detail: `the first line is not [stream, key, partitions, id, type]: ${preview(bytes, start, metaEnd)}` };
  }
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

export function isRejection(read: RawEvent | Rejection): read is Rejection {
  return "reason" in read;
}
