/**
 * The Effect API beside the Promise one: a group member as a scoped
 * resource. Acquiring joins the group; closing the scope finishes the batches
 * in flight, commits and leaves.
 *
 *   const program = Effect.scoped(Effect.gen(function* () {
 *     const member = yield* Consumer.member(sql, { group: "billing", streams: ["orders"], handler });
 *     yield* Consumer.awaitDone(member); // runs until interrupted
 *   }));
 */
import { Effect, type Scope } from "effect";
import type { Sql } from "postgres";
import { consumer, type Consumer as Member, type ConsumerOptions } from "./consumer.ts";

export const Consumer = {
  member: (sql: Sql, options: ConsumerOptions): Effect.Effect<Member, unknown, Scope.Scope> =>
    Effect.acquireRelease(
      Effect.tryPromise({ try: () => consumer(sql, options), catch: (error) => error }),
      (member) => Effect.promise(() => member.stop().catch(() => undefined)),
    ),
  /** Waits until the member stops or fails (a fatal error). */
  awaitDone: (member: Member): Effect.Effect<void, unknown> => Effect.tryPromise({ try: () => member.done, catch: (error) => error }),
};
