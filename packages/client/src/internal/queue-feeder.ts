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
 */
import type { Sql } from "postgres";
import { QUEUE_CHANNEL } from "@tributary/core";
import { consumer, type Consumer } from "./consumer/consumer.ts";
import { jsonText } from "./json-text.ts";

export const feederGroup = (queue: string): string => `tributary.queue.${queue}`;

export async function feedQueue(sql: Sql, queue: string, stream: string, options: { log?: (message: string) => void } = {}): Promise<Consumer> {
  return consumer(sql, {
    group: feederGroup(queue),
    streams: [stream],
    transactional: true,
    ...(options.log ? { log: options.log } : {}),
    batchHandler: async (events, { tx }) => {
      await tx!`
        insert into tributary.queue_messages (queue, key, payload, visible_at)
        select ${queue}, e.key, e.event, now()
          from jsonb_to_recordset(${jsonText(events.map((e) => ({
            key: e.key,
            event: { id: e.id, stream: e.stream, partition: e.partition, offset: e.offset, key: e.key, type: e.type, data: e.data, headers: e.headers, committed_at: e.committedAt },
          })))}::text::jsonb) as e(key text, event jsonb)
         order by (e.event->>'offset')::bigint`;
      await tx!`select pg_notify(${QUEUE_CHANNEL}, ${queue})`;
    },
  });
}
