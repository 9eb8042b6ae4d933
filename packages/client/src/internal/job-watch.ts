/**
 * Watching job states (queues created with `notify_states`): every change —
 * queued, running, succeeded, failed (will retry), dead — arrives as it
 * commits, from NOTIFY tributary_jobs. The "a websocket gateway shows job
 * status" use case: filter by queue and/or job ids and forward.
 *
 * Notifications are not stored: a watcher sees changes from the moment it
 * listens. The current state of a job is in the queue tables (a row in
 * queue_messages: queued / running; in queue_dead_letters: dead; neither:
 * succeeded).
 */
import type { Sql } from "postgres";
import { JOBS_CHANNEL } from "@tributary/core";

export type JobState = "queued" | "running" | "succeeded" | "failed" | "dead";

export interface JobStateChange {
  readonly queue: string;
  readonly id: string;
  readonly state: JobState;
  readonly deliveries: number;
  readonly error: string | null;
  readonly at: Date;
}

export interface WatchOptions {
  readonly queue?: string;
  readonly ids?: readonly string[];
  readonly signal?: AbortSignal;
}

export async function* watchJobs(sql: Sql, options: WatchOptions = {}): AsyncGenerator<JobStateChange> {
  const ids = options.ids ? new Set(options.ids.map(String)) : null;
  const pending: JobStateChange[] = [];
  let wake: (() => void) | null = null;
  const listener = await sql.listen(JOBS_CHANNEL, (payload) => {
    const raw = JSON.parse(payload) as { queue: string; id: number; state: JobState; deliveries: number; error: string | null; at: string };
    const change: JobStateChange = { queue: raw.queue, id: String(raw.id), state: raw.state, deliveries: raw.deliveries, error: raw.error, at: new Date(raw.at) };
    if (options.queue !== undefined && change.queue !== options.queue) return;
    if (ids && !ids.has(change.id)) return;
    pending.push(change);
    wake?.();
  });
  const onAbort = () => wake?.();
  options.signal?.addEventListener("abort", onAbort);
  try {
    while (!options.signal?.aborted) {
      const next = pending.shift();
      if (next) {
        yield next;
        continue;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = null;
    }
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    await listener.unlisten().catch(() => undefined);
  }
}
