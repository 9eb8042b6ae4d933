/**
 * Simulates an outbox relay's clean-up: it learns of committed rows (here,
 * from the writers, in commit order — as a relay reading the WAL would) and
 * deletes them by id in batches of up to `batchSize`, on its own connection,
 * as fast as it can. The decoding itself is not simulated: only the extra
 * writes (deletes, their WAL, vacuum) that an outbox costs.
 */
import type { Sql } from "postgres";

export class OutboxConsumer {
  private readonly pending: string[] = [];
  private stopping = false;
  private loop: Promise<void> | null = null;
  deleted = 0;
  maxBacklog = 0;

  constructor(
    private readonly sql: Sql,
    private readonly batchSize = 1000,
  ) {}

  committed(ids: readonly string[]): void {
    for (const id of ids) this.pending.push(id);
    if (this.pending.length > this.maxBacklog) this.maxBacklog = this.pending.length;
  }

  start(): void {
    this.loop = (async () => {
      while (!this.stopping || this.pending.length > 0) {
        if (this.pending.length === 0) {
          await new Promise((r) => setTimeout(r, 5));
          continue;
        }
        const ids = this.pending.splice(0, this.batchSize);
        await this.sql`delete from bench_outbox where id = any(${ids}::uuid[])`;
        this.deleted += ids.length;
      }
    })();
  }

  /** Deletes what is left, then stops. */
  async drain(): Promise<void> {
    this.stopping = true;
    await this.loop;
  }
}
