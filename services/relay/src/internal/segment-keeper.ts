/**
 * Retention, run by the active relay (migrations/0011_retention.sql,
 * docs/ARCHITECTURE.md invariant 15). Every `intervalMs`:
 *
 *   1. tributary.roll_segments() creates the next segment of each stream
 *      whose current one is due (by its retention's segment age, events or
 *      bytes), empty;
 *   2. the relay begins each segment created ahead with its next batch
 *      (RelayState.requestRoll): only the relay knows the offsets the
 *      segment begins at, and it writes them with the batch;
 *   3. tributary.expire_segments() drops the segments the streams' limits no
 *      longer need, oldest first;
 *   4. tributary.mark_times() marks the commit times of the blocks of
 *      offsets completed since (migration 0013), which seeking by time
 *      starts from.
 *
 * The functions are the same ones an operator may schedule with pg_cron. An
 * error here is logged and the next run tries again: retention never stops
 * the relay (a drop that would wait on readers is left for the next run).
 */
import type { Sql } from "postgres";
import type { RelayState } from "./relay-state.ts";
import { sleep } from "./abortable-sleep.ts";

export interface SegmentKeeperOptions {
  readonly intervalMs: number;
  readonly log: (message: string) => void;
  /** The relay writes a batch now if it can (the begun segments go with it). */
  readonly wake: () => void;
}

export class SegmentKeeper {
  private failing = false;

  constructor(
    private readonly sql: Sql,
    private readonly state: RelayState,
    private readonly options: SegmentKeeperOptions,
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.once();
        if (this.failing) this.options.log("retention runs again");
        this.failing = false;
      } catch (error) {
        if (signal.aborted) return;
        if (!this.failing) this.options.log(`retention failed, trying again every ${this.options.intervalMs} ms: ${(error as Error)?.message ?? error}`);
        this.failing = true;
      }
      await sleep(this.options.intervalMs, signal);
    }
  }

  async once(): Promise<void> {
    await this.sql`select * from tributary.roll_segments()`;
    const ready = await this.sql<{ stream: string; segment: number; partitions: number }[]>`
      select g.stream, g.segment, s.partitions
        from tributary.segments g join tributary.streams s on s.name = g.stream
       where g.first_offsets is null`;
    for (const r of ready) this.state.requestRoll(r.stream, r.segment, r.partitions);
    if (ready.length > 0) this.options.wake();
    const expired = await this.sql<{ stream: string; segment: number; events: string; bytes: string }[]>`
      select stream, segment, events::text, bytes::text from tributary.expire_segments()`;
    for (const e of expired) {
      this.options.log(`retention dropped segment ${e.segment} of stream '${e.stream}' (${e.events} events, ${e.bytes} bytes)`);
    }
    await this.sql`select tributary.mark_times()`;
  }
}
