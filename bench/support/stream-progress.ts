/**
 * How many events the relay has put into the stream, read from
 * tributary.partition_offsets (written in the same transaction as the events,
 * so sum(next_offset) = rows in tributary.events, without scanning them).
 * Woken by the relay's NOTIFY after each batch, with a slow poll as a backstop.
 */
import type { Sql } from "postgres";
import { EVENTS_CHANNEL } from "@tributary/core";

export async function streamedEvents(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: string }[]>`select coalesce(sum(next_offset), 0)::text as n from tributary.partition_offsets`;
  return Number(row!.n);
}

/** Resolves with performance.now() at the first read that showed at least `expected` events. */
export async function waitForStreamedEvents(sql: Sql, expected: number, timeoutMs: number, onProgress?: (n: number) => void): Promise<number> {
  let done: (at: number) => void = () => {};
  let failed: (error: Error) => void = () => {};
  const reached = new Promise<number>((resolve, reject) => {
    done = resolve;
    failed = reject;
  });
  let reading = false;
  let again = false;
  let last = 0;
  const check = async (): Promise<void> => {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    try {
      do {
        again = false;
        last = await streamedEvents(sql);
        if (last >= expected) done(performance.now());
      } while (again && last < expected);
    } catch (error) {
      failed(error as Error);
    } finally {
      reading = false;
    }
  };
  const listener = await sql.listen(EVENTS_CHANNEL, () => void check());
  const poll = setInterval(() => void check(), 250);
  const progress = setInterval(() => onProgress?.(last), 2000);
  const deadline = setTimeout(() => failed(new Error(`timed out after ${timeoutMs} ms: the stream holds ${last} of ${expected} events`)), timeoutMs);
  try {
    void check();
    return await reached;
  } finally {
    clearInterval(poll);
    clearInterval(progress);
    clearTimeout(deadline);
    await listener.unlisten();
  }
}
