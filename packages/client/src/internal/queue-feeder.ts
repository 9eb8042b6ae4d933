/**
 * Feeds a queue from a stream: every event becomes one message, in stream
 * order, exactly once. The feeder is a consumer group member (group
 * `tributary.queue.<queue>`) in transactional mode: the messages of a batch
 * and the stream offset commit in one transaction, so a crash neither loses
 * nor repeats an event. Any number of feeders (every worker runs one) share
 * the stream's partitions.
 *
 * Message: key = the event key (on a FIFO queue, each key's events are
 * delivered one at a time in stream order), payload = the whole event
 * { id, stream, partition, offset, key, type, data, headers, committed_at }.
 *
 * The messages go through tributary.send_many (migrations/0008), so a fed
 * message obeys the queue's rules like a sent one: the payload limit and the
 * key rule, and the `queued` notification of a notify_states queue. An event
 * whose message breaks a rule (its payload, the whole event, is over
 * max_data_bytes) is not an error of the batch: with `invalid: dead_letter`
 * it goes to the queue's dead letters in the same transaction, the feeder
 * logs it, and the events after it go on. Raising instead would stop the
 * partition for good (the consumer retries the batch, then pauses at that
 * event) — docs/ARCHITECTURE.md invariant 13: nothing halts the pipeline,
 * nothing set aside is silent.
 */
import type { Sql } from "postgres";
import { consumer, type Consumer } from "./consumer/consumer.ts";
import { jsonText } from "./json-text.ts";

export const feederGroup = (queue: string): string => `tributary.queue.${queue}`;

export async function feedQueue(sql: Sql, queue: string, stream: string, options: { log?: (message: string) => void } = {}): Promise<Consumer> {
  const log = options.log ?? ((m: string) => console.error(`[tributary feeder ${queue}] ${m}`));
  return consumer(sql, {
    group: feederGroup(queue),
    streams: [stream],
    transactional: true,
    ...(options.log ? { log: options.log } : {}),
    batchHandler: async (events, { tx }) => {
      // One partition's batch, in offset order: send_many keeps array order.
      const refused = await tx!<{ n: string; id: string; error: string }[]>`
        with fed as (
          select e.n, e.item ->> 'key' as key, e.item -> 'event' as event
            from jsonb_array_elements(${jsonText(events.map((e) => ({
              key: e.key,
              event: { id: e.id, stream: e.stream, partition: e.partition, offset: e.offset, key: e.key, type: e.type, data: e.data, headers: e.headers, committed_at: e.committedAt },
            })))}::text::jsonb) with ordinality as e(item, n)
        )
        select r.n, r.id, r.error
          from tributary.send_many(${queue},
                 array(select event from fed order by n), array(select key from fed order by n),
                 '{"invalid": "dead_letter"}') with ordinality as r(id, error, n)
         where r.error is not null`;
      for (const r of refused) {
        const e = events[Number(r.n) - 1]!;
        log(`queue ${queue}: event ${e.id} (stream ${e.stream}, partition ${e.partition}, offset ${e.offset}) ${r.error}; it went to the dead letters as ${r.id}`);
      }
    },
  });
}
