/**
 * JSON text of a value at any nesting depth.
 *
 * Whatever `append` accepts every reader must be able to read and pass on.
 * PostgreSQL's jsonb accepts data nested thousands of levels deep, and V8's
 * JSON.parse (postgres.js's jsonb parser) reads any depth, but V8's
 * JSON.stringify recurses: at about 5,000 levels it throws RangeError
 * "Maximum call stack size exceeded". That ended `tributary tail`, paused a
 * group member's partition on every restart, and stopped a stream-fed queue.
 *
 * jsonText() is JSON.stringify (same output, same speed) that falls back to
 * an iterative writer with its own stack when the value is too deep. The
 * fallback keeps JSON.stringify's rules for what parsed JSON and ordinary
 * data hold: toJSON(key), undefined/functions/symbols skipped in objects and
 * null in arrays, non-finite numbers as null, a BigInt or a cycle a TypeError.
 */
export function jsonText(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
  }
  return deepJsonText(value);
}

type Work =
  | { readonly text: string }
  | { readonly value: unknown; readonly inArray: boolean }
  | { readonly leave: object };

function deepJsonText(root: unknown): string {
  const out: string[] = [];
  const ancestors = new Set<object>();
  const work: Work[] = [{ value: prepare(root, ""), inArray: false }];
  while (work.length > 0) {
    const item = work.pop()!;
    if ("text" in item) {
      out.push(item.text);
      continue;
    }
    if ("leave" in item) {
      ancestors.delete(item.leave);
      continue;
    }
    const value = item.value;
    if (value === null) out.push("null");
    else if (typeof value === "string") out.push(JSON.stringify(value));
    else if (typeof value === "number") out.push(Number.isFinite(value) ? String(value) : "null");
    else if (typeof value === "boolean") out.push(value ? "true" : "false");
    else if (typeof value === "bigint") throw new TypeError("Do not know how to serialize a BigInt");
    else if (typeof value !== "object") out.push(item.inArray ? "null" : ""); // undefined, function, symbol
    else {
      if (ancestors.has(value)) throw new TypeError("Converting circular structure to JSON");
      ancestors.add(value);
      work.push({ leave: value });
      if (Array.isArray(value)) {
        out.push("[");
        work.push({ text: "]" });
        for (let i = value.length - 1; i >= 0; i--) {
          work.push({ value: prepare(value[i], String(i)), inArray: true });
          if (i > 0) work.push({ text: "," });
        }
      } else {
        out.push("{");
        work.push({ text: "}" });
        const members: Array<[string, unknown]> = [];
        for (const key of Object.keys(value)) {
          const member = prepare((value as Record<string, unknown>)[key], key);
          if (member === undefined || typeof member === "function" || typeof member === "symbol") continue;
          members.push([key, member]);
        }
        for (let i = members.length - 1; i >= 0; i--) {
          work.push({ value: members[i]![1], inArray: false });
          work.push({ text: `${JSON.stringify(members[i]![0])}:` });
          if (i > 0) work.push({ text: "," });
        }
      }
    }
  }
  return out.join("");
}

/** The value JSON.stringify writes for `value` under `key`: toJSON() applied, boxed primitives unboxed. */
function prepare(value: unknown, key: string): unknown {
  if (value !== null && typeof value === "object" && typeof (value as { toJSON?: unknown }).toJSON === "function") {
    value = (value as { toJSON(key: string): unknown }).toJSON(key);
  }
  if (value instanceof Number || value instanceof String || value instanceof Boolean) return value.valueOf();
  return value;
}
