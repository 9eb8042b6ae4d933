/**
 * Writes a backlog of events through the public SQL API as fast as the
 * server takes them: half as single-event transactions (tributary.append),
 * half as 100-event transactions (tributary.append_many), interleaved, from
 * several concurrent connections. Every statement runs in autocommit, so a
 * statement is a transaction and costs one round trip.
 */
import postgres from "postgres";
import { benchEvent } from "./event-payload.ts";

export const EVENTS_PER_BATCH_TRANSACTION = 100;

export interface WriteResult {
  readonly events: number;
  readonly transactions: number;
  readonly seconds: number;
}

type Job = { readonly first: number; readonly count: number };

/** Singles and 100-event batches, interleaved so the WAL mixes both shapes. */
function plan(total: number): Job[] {
  const singles = Math.floor(total / 2);
  const batchJobs: Job[] = [];
  for (let first = singles; first < total; first += EVENTS_PER_BATCH_TRANSACTION) {
    batchJobs.push({ first, count: Math.min(EVENTS_PER_BATCH_TRANSACTION, total - first) });
  }
  const jobs: Job[] = [];
  const singlesPerBatch = batchJobs.length ? Math.ceil(singles / batchJobs.length) : singles;
  let nextSingle = 0;
  for (const batch of batchJobs) {
    for (let k = 0; k < singlesPerBatch && nextSingle < singles; k++) jobs.push({ first: nextSingle++, count: 1 });
    jobs.push(batch);
  }
  while (nextSingle < singles) jobs.push({ first: nextSingle++, count: 1 });
  return jobs;
}

export async function writeBacklog(url: string, total: number, writers: number, onProgress?: (events: number) => void): Promise<WriteResult> {
  const sql = postgres(url, { max: writers, onnotice: () => {} });
  const jobs = plan(total);
  let next = 0;
  let written = 0;
  const started = performance.now();
  const progress = setInterval(() => onProgress?.(written), 2000);
  try {
    await Promise.all(
      Array.from({ length: writers }, async () => {
        for (let j = next++; j < jobs.length; j = next++) {
          const job = jobs[j]!;
          if (job.count === 1) {
            const e = benchEvent(job.first);
            await sql`select tributary.append(${e.stream}, ${e.key}, ${e.type}, ${e.data}::text::jsonb, ${e.headers}::text::jsonb)`;
          } else {
            const events = Array.from({ length: job.count }, (_, k) => benchEvent(job.first + k));
            await sql`
              select tributary.append_many(
                ${events.map((e) => e.stream)}::text[], ${events.map((e) => e.key)}::text[],
                ${events.map((e) => e.type)}::text[], ${events.map((e) => e.data)}::text[]::jsonb[],
                ${events.map((e) => e.headers)}::text[]::jsonb[])`;
          }
          written += job.count;
        }
      }),
    );
  } finally {
    clearInterval(progress);
    await sql.end({ timeout: 5 });
  }
  return { events: written, transactions: jobs.length, seconds: (performance.now() - started) / 1000 };
}
