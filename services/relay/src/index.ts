/**
 * @tributary/relay — copies committed events from the replication slot into
 * tributary.events with dense per-partition offsets (docs/ARCHITECTURE.md invariants 1-7).
 *
 *   relay(config)       the Effect program (retries until interrupted or fatal)
 *   startRelay(config)  the same as a handle with stop() for Promise code
 */
import { Effect, Exit, Fiber } from "effect";
import { relay, type RelayConfig } from "./internal/relay.ts";

export { relay } from "./internal/relay.ts";
export type { RelayConfig, PumpStats } from "./internal/relay.ts";
export { RelayFatalError, RelayFencedError } from "./internal/errors.ts";
export { RelayState } from "./internal/relay-state.ts";
export type { Batch, Checkpoint, Position, StreamRows } from "./internal/relay-state.ts";
export type { BatchHooks, RelayPump } from "./internal/pump.ts";

export interface RelayHandle {
  /** Settles when the relay stops: rejects with a fatal error, resolves after stop(). */
  readonly done: Promise<void>;
  /** Interrupts the relay: closes the replication stream and its connections. */
  stop(): Promise<void>;
}

export function startRelay(config: RelayConfig): RelayHandle {
  const fiber = Effect.runFork(relay(config));
  const done = new Promise<void>((resolve, reject) => {
    fiber.addObserver((exit) => {
      if (Exit.isSuccess(exit) || Exit.hasInterrupts(exit)) resolve();
      else reject(Exit.isFailure(exit) ? squash(exit) : exit);
    });
  });
  return {
    done,
    stop: async () => {
      await Effect.runPromise(Fiber.interrupt(fiber));
    },
  };
}

function squash(exit: Exit.Failure<unknown, unknown>): unknown {
  const found = exit.cause.reasons.find((r) => r._tag === "Fail" || r._tag === "Die") as { error?: unknown; defect?: unknown } | undefined;
  return found?.error ?? found?.defect ?? exit.cause;
}
