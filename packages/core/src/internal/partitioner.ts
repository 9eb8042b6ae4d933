/**
 * Kafka's default partitioner: partition = toPositive(murmur2(utf8(key))) mod n.
 * Using the same function lets stream partition p map 1:1 to Kafka partition p
 * (docs/ARCHITECTURE.md invariant 3). A port of org.apache.kafka.common.utils.Utils.murmur2.
 * The relay numbers events with it; @tributary/client re-exports partitionFor
 * so applications can compute a key's partition.
 */
const SEED = 0x9747b28c;
const M = 0x5bd1e995;
const encoder = new TextEncoder();

/** murmur2 of the first `length` bytes of `data` (all of them by default). */
export function murmur2(data: Uint8Array, length: number = data.length): number {
  let h = SEED ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i << 2;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const tail = length & ~3;
  switch (length & 3) {
    case 3:
      h ^= data[tail + 2]! << 16;
    // falls through
    case 2:
      h ^= data[tail + 1]! << 8;
    // falls through
    case 1:
      h ^= data[tail]!;
      h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** UTF-8 of the key being hashed: reused, so numbering an event allocates no bytes (a UTF-16 unit is at most 3 bytes). */
let scratch = new Uint8Array(256);

/** The partition of `key` in a stream of `partitions` partitions. */
export function partitionFor(key: string, partitions: number): number {
  if (key.length * 3 > scratch.length) scratch = new Uint8Array(key.length * 3);
  const { written } = encoder.encodeInto(key, scratch);
  return (murmur2(scratch, written) & 0x7fffffff) % partitions;
}
