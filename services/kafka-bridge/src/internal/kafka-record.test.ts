import { describe, expect, it } from "vitest";
import type { RawStreamEvent } from "@tributary/client";
import { toKafkaRecord } from "./kafka-record.ts";

// As the bridge reads it: each column's bytes as PostgreSQL sent them.
const event: RawStreamEvent = {
  stream: "orders", partition: 3, offset: 41,
  id: Buffer.from("00000000-0000-0000-0000-000000000001"), key: Buffer.from("o-1"), type: Buffer.from("OrderPlaced"),
  data: Buffer.from(`{"items": ["a"], "total": 42}`), headers: Buffer.from(`{"attempt": 2, "missing": null, "traceparent": "00-abc-01"}`),
  committedAt: Buffer.from("2026-11-22 07:00:00.123+00"),
};
const text = (headers: Record<string, string | Buffer>) => Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v.toString()]));

describe("toKafkaRecord", () => {
  it("keys by the event key, carries the data's JSON text as it is and the event's own headers", () => {
    const record = toKafkaRecord(event, false);
    expect(record.key.toString()).toBe("o-1");
    expect(record.value.toString()).toBe(`{"items": ["a"], "total": 42}`);
    expect(text(record.headers)).toEqual({
      attempt: "2",
      traceparent: "00-abc-01",
      "tributary-id": "00000000-0000-0000-0000-000000000001",
      "tributary-type": "OrderPlaced",
      "tributary-stream": "orders",
      "tributary-partition": "3",
      "tributary-offset": "41",
      "tributary-committed-at": "2026-11-22T07:00:00.123Z",
    });
    expect("partition" in record).toBe(false); // Kafka's partitioner decides by key
  });

  it("pins the stream partition when the topic's partitions line up", () => {
    expect(toKafkaRecord(event, true).partition).toBe(3);
  });

  it("lets no event header override the tributary- ones", () => {
    const spoofed = toKafkaRecord({ ...event, headers: Buffer.from(`{"tributary-id": "spoof"}`) }, false);
    expect(spoofed.headers["tributary-id"]!.toString()).toBe("00000000-0000-0000-0000-000000000001");
  });

  it("converts each commit time to UTC ISO 8601 (whatever the session's time zone), and reuses it for the next event of its transaction", () => {
    const at = (committed: string) => toKafkaRecord({ ...event, committedAt: Buffer.from(committed) }, false).headers["tributary-committed-at"];
    expect(at("2026-11-22 07:00:01.5+00")).toBe("2026-11-22T07:00:01.500Z");
    expect(at("2026-11-22 07:00:01.5+00")).toBe("2026-11-22T07:00:01.500Z");
    expect(at("2026-11-22 08:00:02+01")).toBe("2026-11-22T07:00:02.000Z");
    expect(at("2026-11-22 07:00:02.999999+00")).toBe("2026-11-22T07:00:02.999Z");
    const view = Buffer.from("xx2026-11-22 07:00:03+00").subarray(2);
    expect(at(view.toString())).toBe("2026-11-22T07:00:03.000Z");
    expect(toKafkaRecord({ ...event, headers: Buffer.from("{}") }, false).headers).not.toHaveProperty("traceparent");
  });
});
