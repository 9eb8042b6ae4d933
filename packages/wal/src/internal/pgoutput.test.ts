import { describe, expect, it } from "vitest";
import { parsePgoutput } from "./pgoutput.ts";

const u64 = (value: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(value);
  return b;
};
const message = (flags: number, prefix: string, content: string) => {
  const body = Buffer.from(content);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  return Buffer.concat([Buffer.from("M"), Buffer.from([flags]), u64(0x1234n), Buffer.from(`${prefix}\0`), length, body]);
};

describe("pgoutput decoding", () => {
  it("reads begin and commit LSNs and the commit time", () => {
    const xid = Buffer.alloc(4);
    xid.writeUInt32BE(4_000_000_001);
    const begin = Buffer.concat([Buffer.from("B"), u64(0x1_0000_0010n), u64(1_000_002n), xid]);
    expect(parsePgoutput(begin)).toEqual({ kind: "begin", commitLsn: 0x1_0000_0010n, commitTimeMicros: 946_684_800_000_000n + 1_000_002n, xid: 4_000_000_001 });
    const commit = Buffer.concat([Buffer.from("C"), Buffer.from([0]), u64(0x1_0000_0010n), u64(0x1_0000_0040n), u64(0n)]);
    expect(parsePgoutput(commit)).toEqual({ kind: "commit", commitLsn: 0x1_0000_0010n, endLsn: 0x1_0000_0040n });
  });

  it("reads a tributary message's LSN and content in place, up to the content length", () => {
    const content = `["s","k",8,"u","T"]\n{}\n{"a": 1}`;
    const bytes = Buffer.concat([message(1, "tributary", content), Buffer.from("trailing")]);
    const parsed = parsePgoutput(bytes);
    expect(parsed?.kind).toBe("message");
    if (parsed?.kind !== "message") return;
    expect(parsed.lsn).toBe(0x1234n);
    expect(parsed.content.toString()).toBe(content);
  });

  it("ignores other prefixes, non-transactional messages and other message types", () => {
    const content = `["s","k",8,"u","T"]\n{}\n{}`;
    expect(parsePgoutput(message(1, "tributaryx", content))).toBeNull();
    expect(parsePgoutput(message(1, "other", content))).toBeNull();
    expect(parsePgoutput(message(0, "tributary", content))).toBeNull();
    expect(parsePgoutput(Buffer.from([0x52, 0, 0, 0, 1]))).toBeNull();
    expect(parsePgoutput(message(1, "a", ""))).toBeNull(); // shorter than our prefix: no read past the end
  });

  it("rejects a message whose content runs past its end", () => {
    const bytes = message(1, "tributary", `["s","k",8,"u","T"]\n{}\n{}`);
    expect(() => parsePgoutput(bytes.subarray(0, bytes.length - 2))).toThrow(/truncated/);
  });
});
