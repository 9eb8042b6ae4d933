/**
 * Sticky, even partition assignment for a consumer group — pure, no I/O.
 *
 * For each stream, the live members subscribed to it share its partitions:
 * every member gets ⌊P/n⌋ or ⌈P/n⌉ of them (±1), and a partition stays with
 * its current owner whenever that owner is still subscribed and under its
 * share, so a member joining or leaving moves as few partitions as possible.
 * The members that get the ⌈P/n⌉ shares are, in order: those that already own
 * that many (no move), then those with the fewest partitions of all streams so
 * far (balance across streams), then by id (determinism).
 */

export interface GroupMember {
  readonly id: string;
  readonly streams: readonly string[];
}

export interface StreamPartitions {
  readonly name: string;
  readonly partitions: number;
}

/** "stream\u0000partition" → owner id. */
export type Owners = ReadonlyMap<string, string>;

export const partitionKey = (stream: string, partition: number): string => `${stream}\u0000${partition}`;

export function assignPartitions(streams: readonly StreamPartitions[], members: readonly GroupMember[], current: Owners): Map<string, string> {
  const assigned = new Map<string, string>();
  const totals = new Map<string, number>(members.map((m) => [m.id, 0]));
  const byName = [...streams].sort((a, b) => compare(a.name, b.name));
  for (const stream of byName) {
    const subscribers = members.filter((m) => m.streams.includes(stream.name)).map((m) => m.id).sort(compare);
    if (subscribers.length === 0) continue;
    const base = Math.floor(stream.partitions / subscribers.length);
    const extra = stream.partitions % subscribers.length;

    const owned = new Map<string, number[]>(subscribers.map((id) => [id, []]));
    for (let p = 0; p < stream.partitions; p++) {
      const owner = current.get(partitionKey(stream.name, p));
      if (owner !== undefined) owned.get(owner)?.push(p);
    }
    const byPriority = [...subscribers].sort(
      (a, b) =>
        Number(owned.get(b)!.length > base) - Number(owned.get(a)!.length > base) ||
        totals.get(a)! - totals.get(b)! ||
        compare(a, b),
    );
    const quota = new Map<string, number>(byPriority.map((id, i) => [id, base + (i < extra ? 1 : 0)]));

    const free: number[] = [];
    const taken = new Set<number>();
    for (const id of subscribers) {
      const keep = owned.get(id)!.slice(0, quota.get(id)!);
      for (const p of keep) {
        assigned.set(partitionKey(stream.name, p), id);
        taken.add(p);
      }
      quota.set(id, quota.get(id)! - keep.length);
      totals.set(id, totals.get(id)! + keep.length);
    }
    for (let p = 0; p < stream.partitions; p++) if (!taken.has(p)) free.push(p);
    for (const id of byPriority) {
      const room = quota.get(id)!;
      for (const p of free.splice(0, room)) assigned.set(partitionKey(stream.name, p), id);
      totals.set(id, totals.get(id)! + room);
    }
  }
  return assigned;
}

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
