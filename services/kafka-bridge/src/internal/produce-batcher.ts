/**
 * One Produce request for every partition batch that is ready, instead of one
 * per batch.
 *
 * kafkajs's idempotent producer sends one request per broker at a time (it
 * holds a per-broker lock while it numbers, encodes and sends), so eight
 * partitions each calling send() queue up behind each other: under a steady
 * load bench:bridge measured 698 requests of 81 records in 15 s, each batch
 * waiting for up to seven others' round trips. Here a batch joins the next
 * request: the first goes out at once (on the next turn of the event loop,
 * with whatever else became ready in the same turn), and the batches that
 * arrive while it is in flight go together in the one after it. A batch's
 * promise settles with its request: resolved once Kafka acknowledged it
 * (acks = all), rejected with the request's error, and the caller retries it.
 *
 * Order: each stream partition has at most one batch waiting or in flight
 * (the consumer hands a partition its next batch only after the previous one
 * was committed), and requests go one after another.
 */
import type { Message, Producer } from "kafkajs";

interface Waiting {
  readonly topic: string;
  readonly messages: readonly Message[];
  readonly done: (error?: unknown) => void;
}

export class ProduceBatcher {
  private waiting: Waiting[] = [];
  private sending = false;

  constructor(private readonly producer: Producer) {}

  send(topic: string, messages: readonly Message[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ topic, messages, done: (error) => (error === undefined ? resolve() : reject(error)) });
      if (!this.sending) {
        this.sending = true;
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.waiting.length > 0) {
        const batches = this.waiting;
        this.waiting = [];
        const byTopic = new Map<string, Message[]>();
        for (const b of batches) {
          const messages = byTopic.get(b.topic);
          if (messages) for (const m of b.messages) messages.push(m);
          else byTopic.set(b.topic, [...b.messages]);
        }
        try {
          await this.producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
          for (const b of batches) b.done();
        } catch (error) {
          for (const b of batches) b.done(error ?? new Error("send failed"));
        }
      }
    } finally {
      this.sending = false;
    }
  }
}
