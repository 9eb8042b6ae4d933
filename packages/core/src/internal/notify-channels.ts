/**
 * The NOTIFY channels (docs/ARCHITECTURE.md "Advisory locks and NOTIFY
 * channels"). Each is a wake-up, never a source of truth: a notification is
 * delivered when its transaction commits, and only to sessions listening
 * then, so every listener also polls and reads the state from the tables.
 * Any role that can connect may notify or listen on them (outside the trust
 * boundary): nothing acts on a payload beyond waking up and filtering.
 */

/**
 * Sent by the relay in each batch transaction that wrote events
 * (services/relay stream-writer). Payload: the slot name. Readers (tail) and
 * consumer group members wake up and read past their positions.
 */
export const EVENTS_CHANNEL = "tributary_events";

/**
 * Sent by consumer group members (packages/client membership.ts) in the
 * transaction that rebalances a group (a new generation, expired members,
 * finished releases) and when a member released the partitions it lost.
 * Payload: the group name. Members of that group heartbeat at once.
 */
export const GROUPS_CHANNEL = "tributary_groups";

/**
 * Sent by tributary.send, tributary.nack (a message that will be retried),
 * tributary.ack / ack_batch of FIFO-keyed messages, tributary.release,
 * tributary.redrive, and the stream feeder of a stream-fed queue. Payload:
 * the queue name. Idle workers of that queue claim at once.
 */
export const QUEUE_CHANNEL = "tributary_queue";

/**
 * Sent by tributary.job_state (migration 0003) on every state change of a job
 * in a queue created with notify_states. Payload: JSON text
 * {"queue": text, "id": number, "state": "queued" | "running" | "succeeded" |
 * "failed" | "dead", "deliveries": number, "error": text (at most 1000
 * characters) | null, "at": timestamp (clock_timestamp())}.
 */
export const JOBS_CHANNEL = "tributary_jobs";
