/**
 * The relay's lifecycle, as an Effect program:
 *
 *   session = connect ─► wait to lead (advisory lock; standby polls) ─► check slot
 *             ─► load checkpoint + offsets ─► stream (pump) until error or interrupt
 *   relay   = session retried with capped exponential backoff while the error
 *             is retryable (database unreachable, connection dropped, fenced,
 *             slot still held by a dead relay's walsender); fatal errors
 *             (wal_level, plugin, slot lost) stop the relay with their message.
 *
 * Only one relay is active per slot (invariant 5): the active relay holds a
 * session advisory lock; PostgreSQL itself lets only one walsender use a slot;
 * and the checkpoint's compare-and-set version fences a relay that lost the
 * lock without noticing. A standby polls the lock every `standbyPollMs`, so it
 * takes over within about a second of the active relay's connection closing.
 *
 * Each session rebuilds everything from the database (crash-only): nothing in
 * memory survives an error, so a failed write can never leave a gap.
 */
import { randomUUID } from "node:crypto";
import { Duration, Effect, Schedule } from "effect";
import type { Sql } from "postgres";
import { connectPostgres, parseDatabaseUrl, pgClientConfig, sessionUsesTls } from "@tributary/client";
import { checkWalLevel, inspectSlot, type Decoder } from "@tributary/migrate";
import { Lsn, ReplicationSource } from "@tributary/wal";
import { RelayFatalError, isRetryable } from "./errors.ts";
import { RelayPump, type BatchHooks, type PumpStats } from "./pump.ts";
import { RelayState, type Checkpoint } from "./relay-state.ts";

export interface RelayConfig {
  readonly databaseUrl: string;
  readonly slotName: string;
  /** Expected decoder; defaults to the slot's own plugin. */
  readonly decoder?: Decoder;
  readonly maxBatchEvents?: number;
  readonly maxBatchBytes?: number;
  readonly standbyPollMs?: number;
  readonly statusIntervalMs?: number;
  readonly relayId?: string;
  readonly log?: (message: string) => void;
  /** Test hooks around each batch write (fault injection). */
  readonly hooks?: BatchHooks;
  /** Called with the live pump once the relay is active (status, metrics). */
  readonly onActive?: (pump: RelayPump) => void;
}

// Advisory lock namespace for relays: (RELAY_LOCK, hashtext(slot)).
const RELAY_LOCK = 0x7472_6962; // "trib"

const connect = (url: string, max: number) =>
  Effect.acquireRelease(
    Effect.try({ try: () => connectPostgres(url, { max, onnotice: () => {}, connection: { application_name: "tributary-relay" } }), catch: (e) => toFatal(e) }),
    (sql) => Effect.promise(() => sql.end({ timeout: 1 })),
  );

/** Holds the slot's advisory lock on a reserved connection for the scope's life. */
const lead = (sql: Sql, config: RelayConfig, log: (m: string) => void) =>
  Effect.gen(function* () {
    const conn = yield* Effect.acquireRelease(
      Effect.tryPromise(() => sql.reserve()),
      (c) => Effect.sync(() => c.release()),
    );
    let announced = false;
    yield* Effect.tryPromise(async () => {
      const [row] = await conn<{ ok: boolean }[]>`
        select pg_try_advisory_lock(${RELAY_LOCK}, hashtext(${config.slotName})) as ok`;
      if (!row?.ok) {
        if (!announced) log(`standby: another relay is active on slot '${config.slotName}'; waiting to take over`);
        announced = true;
        throw new NotLeader();
      }
    }).pipe(
      Effect.retry({
        schedule: Schedule.spaced(Duration.millis(config.standbyPollMs ?? 1000)),
        while: (e) => e instanceof Error && e.cause instanceof NotLeader,
      }),
    );
    return conn;
  });

class NotLeader extends Error {}

async function loadState(sql: Sql, config: RelayConfig): Promise<{ checkpoint: Checkpoint; offsets: Array<{ stream: string; partition: number; nextOffset: bigint }> }> {
  const [row] = await sql<{ commit_lsn: string; end_lsn: string; partial_commit_lsn: string | null; partial_events: string; version: string }[]>`
    select commit_lsn::text, end_lsn::text, partial_commit_lsn::text, partial_events::text, version::text
      from tributary.relay_checkpoints where slot_name = ${config.slotName}`;
  if (!row) {
    throw new RelayFatalError("NOT_MIGRATED", `no checkpoint for slot '${config.slotName}': run tributary migrate first (it creates the slot).`);
  }
  const offsets = await sql<{ stream: string; partition: number; next_offset: string }[]>`
    select stream, partition, next_offset::text from tributary.partition_offsets`;
  return {
    checkpoint: {
      commitLsn: Lsn.parse(row.commit_lsn),
      endLsn: Lsn.parse(row.end_lsn),
      partialCommitLsn: row.partial_commit_lsn ? Lsn.parse(row.partial_commit_lsn) : null,
      partialEvents: Number(row.partial_events),
      version: BigInt(row.version),
    },
    offsets: offsets.map((o) => ({ stream: o.stream, partition: o.partition, nextOffset: BigInt(o.next_offset) })),
  };
}

function checkSchemaExists(error: unknown): unknown {
  const e = error as { code?: string };
  if (e?.code === "42P01" || e?.code === "3F000") {
    return new RelayFatalError("NOT_MIGRATED", "the tributary schema is missing: run tributary migrate first.");
  }
  return error;
}

/** One relay session: from connecting to the stream ending (error or interrupt). */
const session = (config: RelayConfig, relayId: string, log: (m: string) => void) =>
  Effect.gen(function* () {
    const sql = yield* connect(config.databaseUrl, 4);
    yield* Effect.tryPromise({ try: () => checkWalLevel(sql), catch: (e) => toFatal(e) });
    const lockConn = yield* lead(sql, config, log);
    const slot = yield* Effect.tryPromise({ try: () => inspectSlot(sql, config.slotName), catch: (e) => toFatal(checkSchemaExists(e)) });
    if (!slot) {
      return yield* Effect.fail(new RelayFatalError("NO_SLOT", `replication slot '${config.slotName}' does not exist: run tributary migrate first (it creates the slot).`));
    }
    if (config.decoder && slot.plugin !== config.decoder) {
      return yield* Effect.fail(new RelayFatalError("SLOT_PLUGIN_MISMATCH",
        `replication slot '${config.slotName}' uses the ${slot.plugin} decoder, not ${config.decoder}: use --decoder ${slot.plugin}, or migrate another --slot for ${config.decoder}.`));
    }
    const loaded = yield* Effect.tryPromise({ try: () => loadState(sql, config), catch: (e) => checkSchemaExists(e) });
    const state = new RelayState(loaded.checkpoint, loaded.offsets, {
      maxBatchEvents: config.maxBatchEvents ?? 5000,
      maxBatchBytes: config.maxBatchBytes ?? 8 << 20,
    });
    // sslmode=prefer: the replication connection takes what the SQL session settled on (node-postgres cannot fall back).
    const preferTls = parseDatabaseUrl(config.databaseUrl).tls.kind === "prefer" && (yield* Effect.tryPromise(() => sessionUsesTls(sql)));
    const source = yield* Effect.acquireRelease(
      Effect.sync(() => new ReplicationSource({
        connection: pgClientConfig(config.databaseUrl, { preferTls }),
        slotName: config.slotName,
        decoder: slot.plugin,
        ...(config.statusIntervalMs !== undefined ? { statusIntervalMs: config.statusIntervalMs } : {}),
      })),
      (s) => Effect.promise(() => s.stop()),
    );
    const pump = new RelayPump(sql, state, source, config.slotName, relayId, config.hooks);
    // Losing the lock connection means another relay may take over: stop at once.
    const watchdog = setInterval(() => {
      lockConn`select 1`.catch((error: unknown) => source.abort(error));
    }, 2000);
    yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(watchdog)));
    log(`active on slot '${slot.slotName}' (${slot.plugin}) from ${Lsn.format(loaded.checkpoint.endLsn)}`);
    config.onActive?.(pump);
    yield* Effect.tryPromise({ try: (signal) => {
      signal.addEventListener("abort", () => void source.stop());
      return source.run(loaded.checkpoint.endLsn, pump);
    }, catch: (e) => e });
  });

function toFatal(error: unknown): unknown {
  const e = error as { name?: string; code?: string; message?: string };
  if (e?.name === "MigrationError" || e?.name === "DatabaseUrlError") return new RelayFatalError(e.code ?? "SETUP", e.message ?? String(error));
  return error;
}

function explainError(error: unknown): string {
  const e = error as { code?: string; message?: string };
  if (e?.code === "ECONNREFUSED" || e?.code === "ENOTFOUND" || e?.code === "ETIMEDOUT") return `database unreachable (${e.code})`;
  if (e?.code === "55006") return `the slot is still in use by another connection (${e.message})`;
  return e?.message ?? String(error);
}

/** The relay: sessions retried with backoff until interrupted or a fatal error. */
export function relay(config: RelayConfig): Effect.Effect<never, unknown> {
  const relayId = config.relayId ?? `relay-${randomUUID().slice(0, 8)}`;
  const log = config.log ?? ((m: string) => console.error(`[tributary relay] ${m}`));
  // 200 ms, 400 ms, … capped at 5 s, jittered so standbys do not stampede.
  const retryPolicy = Schedule.min([Schedule.exponential(Duration.millis(200), 2), Schedule.spaced(Duration.seconds(5))]).pipe(
    Schedule.jittered,
  );
  return Effect.scoped(session(config, relayId, log)).pipe(
    Effect.flatMap(() => Effect.fail(new Error("replication stream ended"))),
    Effect.tapError((error) => Effect.sync(() => {
      if (isRetryable(error)) log(`${explainError(error)}; reconnecting with backoff`);
    })),
    Effect.retry({ schedule: retryPolicy, while: isRetryable }),
  ) as Effect.Effect<never, unknown>;
}

export type { PumpStats };
