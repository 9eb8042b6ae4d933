import { describe, expect, it } from "vitest";
import { jsonText } from "./json-text.ts";

/** Nested `depth` levels: objects and arrays alternating, a string at the bottom. */
function deep(depth: number): unknown {
  let value: unknown = "bottom \"quoted\" ✓";
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? { a: value, n: i } : [value, null];
  return value;
}

// Values hundreds of thousands of levels deep are CPU-bound work (a few
// hundred ms on an idle core): vitest's 5 s default is an assumption about
// this machine's load, not a property of jsonText. Correctness is asserted,
// never speed (benchmarks measure speed).
describe("jsonText", { timeout: 120_000 }, () => {
  it("writes what JSON.stringify writes, including its rules for undefined, toJSON, non-finite numbers and boxed values", () => {
    const samples: unknown[] = [
      null, 1.5, -0, "x\n\u2028", true, [], {}, [undefined, () => 1, Symbol("s")], { u: undefined, f: () => 1, k: 1 },
      { d: new Date(0), n: Number.NaN, i: Infinity, boxed: [new Number(2), new String("s"), new Boolean(false)] }, deep(50),
    ];
    for (const value of samples) {
      const expected = JSON.stringify(value);
      expect(jsonText(value)).toBe(expected);
    }
  });

  it("writes values too deep for JSON.stringify (which overflows the stack), and they parse back", () => {
    const value = deep(20_000);
    expect(() => JSON.stringify(value)).toThrow(RangeError);
    const text = jsonText(value);
    expect(text.startsWith('[{"a":[{"a":[')).toBe(true);
    let back = JSON.parse(text) as unknown;
    for (let i = 20_000 - 1; i >= 0; i--) back = i % 2 === 0 ? (back as { a: unknown }).a : (back as unknown[])[0];
    expect(back).toBe("bottom \"quoted\" ✓");
  });

  it("a cycle or a BigInt is a TypeError, as with JSON.stringify", () => {
    const cyclic: Record<string, unknown> = {};
    let at = cyclic;
    for (let i = 0; i < 20_000; i++) at = (at.a = {}) as Record<string, unknown>;
    at.a = cyclic;
    expect(() => jsonText(cyclic)).toThrow(TypeError);
    expect(() => jsonText({ deep: deep(20_000), b: 1n })).toThrow(/BigInt/);
  });
});
