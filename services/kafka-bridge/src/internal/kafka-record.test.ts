import { describe, expect, it } from "vitest";
import type { StreamEvent } from "@tributary/client";
import { toKafkaRecord } from "./kafka-record.ts";

const event: StreamEvent = {
  stream: "orders", partition: 3, offset: 41, id: "00000000-0000-0000-0000-000000000001", key: "o-1", type: "OrderPlaced",
  data: { total: 42, items: ["a"] }, headers: { traceparent: "00-abc-01", attempt: 2, missing: null },
  committedAt: new Date("2026-11-22T07:00:00.123Z"),
};

describe("toKafkaRecord", () => {
  it("keys by the event key, carries the data as JSON and the event's own headers as they are", () => {
    const record = toKafkaRecord(event, false);
    expect(record).toEqual({
      key: "o-1",
      value: `{"total":42,"items":["a"]}`,
      headers: {
        traceparent: "00-abc-01",
        attempt: "2",
        "tributary-id": event.id,
        "tributary-type": "OrderPlaced",
        "tributary-stream": "orders",
        "tributary-partition": "3",
        "tributary-offset": "41",
        "tributary-committed-at": "2026-11-22T07:00:00.123Z",
      },
    });
    expect("partition" in record).toBe(false); // Kafka's partitioner decides by key
  });

  it("pins the stream partition when the topic's partitions line up", () => {
    expect(toKafkaRecord(event, true).partition).toBe(3);
  });

  it("lets no event header override the tributary- ones", () => {
    const spoofed = toKafkaRecord({ ...event, headers: { "tributary-id": "spoof" } }, false);
    expect(spoofed.headers["tributary-id"]).toBe(event.id);
  });
});
