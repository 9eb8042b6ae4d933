import { describe, expect, it } from "vitest";
import { Lsn } from "./lsn.ts";
import { createHmac } from "node:crypto";
import { isRejection, Keyring, readEventMessage, type RawEvent, type Rejection } from "./event-message.ts";
import { timestampMicros } from "./wal2json.ts";

describe("Lsn", () => {
  it("parses and formats both halves", () => {
    expect(Lsn.parse("0/16B3748")).toBe(0x16b3748n);
    expect(Lsn.parse("1/0")).toBe(1n << 32n);
    expect(Lsn.format(Lsn.parse("AB/FFFFFFFF"))).toBe("AB/FFFFFFFF");
    expect(Lsn.parse("0/1") < Lsn.parse("1/0")).toBe(true);
  });
  it("rejects garbage with the expected shape in the message", () => {
    expect(() => Lsn.parse("16B3748")).toThrow(/expected hex "X\/Y"/);
  });
});

describe("event message", () => {
  const secret = Buffer.alloc(32, 7);
  const keyring = new Keyring([{ id: 1, secret }]);
  const sign = (payload: string, key = secret, id = 1) =>
    `tributary-v1 ${id} ${createHmac("sha256", key).update(payload).digest("hex")}\n${payload}`;
  const read = (content: string): RawEvent | Rejection => readEventMessage(keyring, Buffer.from(content));
  const payload = `["orders","k\\n1",8,"00000000-0000-0000-0000-000000000001","OrderPlaced"]\n{"traceparent": "x"}\n{"a": "line\\nbreak"}`;

  it("verifies the signature, then splits meta, headers and data without parsing the data", () => {
    const bytes = Buffer.from(`junk${sign(payload)}junk`);
    const event = readEventMessage(keyring, bytes, 4, bytes.length - 4);
    if (isRejection(event)) throw new Error(event.detail);
    expect({ ...event, headers: event.headers.toString(), data: event.data.toString() }).toEqual({
      stream: "orders", key: "k\n1", partitions: 8, id: "00000000-0000-0000-0000-000000000001",
      type: "OrderPlaced", headers: `{"traceparent": "x"}`, data: `{"a": "line\\nbreak"}`,
    });
  });

  it("rejects unsigned, forged, altered and unknown-key messages, never throwing", () => {
    expect(read(payload)).toMatchObject({ reason: "unsigned" });
    expect(read("garbage")).toMatchObject({ reason: "unsigned" });
    expect(read("\n")).toMatchObject({ reason: "unsigned" });
    expect(readEventMessage(keyring, Buffer.from([0, 0xff, 0x0a, 1]))).toMatchObject({ reason: "unsigned" });
    expect(read(sign(payload, Buffer.alloc(32, 8)))).toMatchObject({ reason: "bad_signature" });
    expect(read(sign(payload).replace("OrderPlaced", "OrderPaid!!"))).toMatchObject({ reason: "bad_signature" });
    expect(read(sign(payload, secret, 2))).toMatchObject({ reason: "unknown_key" });
    expect(read(`tributary-v1 1 xyz\n${payload}`)).toMatchObject({ reason: "unsigned" });
  });

  it("rejects a signed message that is not an event as malformed", () => {
    expect(read(sign("nope"))).toMatchObject({ reason: "malformed" });
    expect(read(sign(`not json\n{}\n{}`))).toMatchObject({ reason: "malformed" });
    expect(read(sign(`["s"]\n{}\n{}`))).toMatchObject({ reason: "malformed" });
  });
});

describe("wal2json timestamps", () => {
  it("reads microseconds and offsets", () => {
    expect(timestampMicros("1970-01-01 00:00:01.000002+00")).toBe(1_000_002n);
    expect(timestampMicros("1970-01-01 02:00:01.5+02")).toBe(1_500_000n);
    expect(timestampMicros("1970-01-01 00:00:01-05:30")).toBe((5n * 3600n + 1800n + 1n) * 1_000_000n);
  });
});
