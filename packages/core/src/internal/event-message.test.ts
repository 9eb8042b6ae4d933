import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { isRejection, Keyring, readEventMessage, type RawEvent, type Rejection } from "./event-message.ts";

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
