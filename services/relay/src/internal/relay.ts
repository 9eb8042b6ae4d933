/**
 * The relay's lifecycle, as an Effect program:
 *
 *   session = connect ─► wait to lead (advisory lock; standby polls, and takes
 *             over an expired lease) ─► take the lease ─► check slot (lost,
 *             re-created = gap) ─► load checkpoint, offsets, signing keys
 *             ─► stream (pump) until error or interrupt
 *   relay   = session retried with capped exponential backoff while the error
 *             is retryable (database unreachable, connection dropped, fenced,
 *             slot still held by a dead relay's walsender, a batch refused for
 *             its data); fatal errors (wal_level, plugin, slot lost or
 *             re-created, authentication, missing privileges or schema) stop
 *             the relay with their message and what to do.
 *
 * Only one relay is active per slot (invariant 5): the active relay holds a
 * session advisory lock and renews a lease while it makes progress
 * (lease.ts); PostgreSQL itself lets only one walsender use a slot; and the
 * checkpoint's compare-and-set version fences a relay that lost the lock
 * without noticing. A standby polls every `standbyPollMs`: it takes over
 * within about a second of the active relay's connection closing, and within
 * `takeoverAfterMs` of the active relay freezing or hanging while connected.
 *
 * A batch the stream table refuses for its data (invariant 13) is retried one
 * entry per batch until the refused entry is known; that entry is set aside in
 * tributary.rejected_messages and the stream goes on (`Recovery`, kept across
 * sessions).
 *
 * Each session rebuilds everything from the database (crash-only): nothing in
 * memory survives an error, so a failed write can never leave a gap.
 */
import { randomUUID } from "node:crypto";
import { Duration, Effect, Schedule } from "effect";
import type { Sql } from "postgres";
import type { Registry } from "prom-client";
import { connectPostgres, openSession, TributaryConnectionError, type Session } from "@tributary/client";
import { defaultSlotAlarmSettings, parseDatabaseUrl, pgClientConfig, sessionUsesTls, type SlotAlarmSettings } from "@tributary/client/internals";
import { Keyring, RELAY_CANDIDATE_LOCK, RELAY_LOCK, type Decoder } from "@tributary/core";
import { checkWalLevel, inspectSlot } from "@tributary/migrate";
import { Lsn, ReplicationSource } from "@tributary/wal";
import { BatchRefusedError, RelayFatalError, RelayFencedError, fatalSetupError, isRetryable } from "./errors.ts";
import { renewLease, takeLease, takeOverExpired } from "./lease.ts";
import { RelayPump, type BatchHooks, type PumpStats } from "./pump.ts";
import { RelayMetrics } from "./relay-metrics.ts";
import { SegmentKeeper } from "./segment-keeper.ts";
import { SlotWatch } from "./slot-watch.ts";
import { entryKey, RelayState, type Checkpoint, type EntryId } from "./relay-state.ts";
import { CaptureReloadError, CaptureSet, Reloads } from "./cdc/capture-set.ts";
import { Chunks } from "./cdc/chunks.ts";
import { RecentCommits } from "./cdc/recent-commits.ts";
import { columnJson } from "./cdc/column-json.ts";
import { sessionOptions, Snapshotter } from "./cdc/snapshotter.ts";
import { TypeCatalog } from "./cdc/type-catalog.ts";

export interface RelayConfig {
  readonly databaseUrl: string;
  readonly slotName: string;
  /** Expected decoder; defaults to the slot's own plugin. */
  readonly decoder?: Decoder;
  readonly maxBatchEvents?: number;
  readonly maxBatchBytes?: number;
  readonly standbyPollMs?: number;
  /** A standby takes over an active relay that made no progress for this long (default 15 s). */
  readonly takeoverAfterMs?: number;
  /** A batch write that takes longer ends the session (default 60 s). */
  readonly writeTimeoutMs?: number;
  readonly statusIntervalMs?: number;
  readonly relayId?: string;
  readonly log?: (message: string) => void;
  /** Test hooks around each batch write (fault injection). */
  readonly hooks?: BatchHooks;
  /** Called with the live pump once the relay is active (status, metrics). */
  readonly onActive?: (pump: RelayPump) => void;
  /** Rows per snapshot chunk of a captured table (default 2000). */
  readonly snapshotChunkRows?: number;
  /** How often the snapshotter looks for a requested snapshot when not woken (default 1 s). */
  readonly snapshotPollMs?: number;
  /** How often the active relay rolls and expires segments (segment-keeper.ts; default 10 s). */
  readonly retentionIntervalMs?: number;
  /** When the active relay's slot is an alarm (defaults: 1 GiB of WAL kept, an unlimited max_slot_wal_keep_size is one). */
  readonly alarms?: Partial<Pick<SlotAlarmSettings, "maxRetainedWalBytes" | "walKeepLimitRequired">>;
  /** How often the active relay looks at its slot for alarms (slot-watch.ts; default 30 s). */
  readonly alarmIntervalMs?: number;
  /** A prom-client registry to register the relay's metrics on (relay-metrics.ts; README "Metrics"). None by default. */
  readonly metrics?: Registry;
}

/**
 * The relay's own sessions ignore statement and idle timeouts set on its role
 * (a 3 ms statement_timeout would fail every batch): its writes have their own
 * deadline, enforced by the server too.
 */
const connect = (url: string, max: number, writeTimeoutMs: number, extra: { max_lifetime?: null } = {}) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => connectPostgres(url, {
        max,
        ...extra,
        onnotice: () => {},
        connection: {
          application_name: "tributary-relay",
          statement_timeout: writeTimeoutMs,
          idle_in_transaction_session_timeout: 0,
          lock_timeout: 0,
        },
      }),
      catch: (e) => toFatal(e),
    }),
    (sql) => Effect.promise(() => sql.end({ timeout: 1 })),
  );

const DEFAULT_TAKEOVER_MS = 15_000;
const DEFAULT_WRITE_TIMEOUT_MS = 60_000;

/**
 * Holds the slot's advisory lock for the scope's life, on a session of its
 * own (openSession, not sql.reserve: a reserved connection that died takes
 * the process down with the next renewal; docs/ARCHITECTURE.md, Known
 * traps). The session's `closed` says the lock is gone.
 */
const lead = (sql: Sql, config: RelayConfig, log: (m: string) => void) =>
  Effect.gen(function* () {
    const lock = yield* Effect.acquireRelease(
      Effect.sync(() => openSession(sql)),
      (s) => Effect.promise(() => s.end({ timeout: 1 })),
    );
    const conn = lock.sql;
    let announced = false;
    // The candidate lock marks this connection as a relay of the slot in
    // pg_locks: one that does not hold RELAY_LOCK too is a standby, and
    // `tributary status` counts them so (docs/ARCHITECTURE.md "Advisory locks
    // and NOTIFY channels"). Shared and tried, so it never waits.
    yield* Effect.tryPromise(() => conn`select pg_try_advisory_lock_shared(${RELAY_CANDIDATE_LOCK}, hashtext(${config.slotName}))`);
    // One statement per poll tries the lock and reads the lease.
    const tryLead = () => conn<{ ok: boolean; expired: boolean | null }[]>`
      select pg_try_advisory_lock(${RELAY_LOCK}, hashtext(${config.slotName})) as ok,
             (select expires_at < now() from tributary.relay_leases where slot_name = ${config.slotName}) as expired`;
    yield* Effect.tryPromise(async () => {
      let [row] = await tryLead();
      if (!row?.ok && row?.expired) {
        const takeover = await takeOverExpired(conn, config.slotName);
        if (takeover) {
          log(`relay ${takeover.relayId} holds slot '${config.slotName}' but made no progress for ${takeover.silentSeconds.toFixed(1)} s ` +
            `(takeover after ${(takeoverMs(config) / 1000).toFixed(1)} s): terminated its ${takeover.terminated} backends; taking over`);
        }
        [row] = await tryLead();
      }
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
    return lock;
  });

class NotLeader extends Error {}

const takeoverMs = (config: RelayConfig) => config.takeoverAfterMs ?? DEFAULT_TAKEOVER_MS;

/** Rejects when the lock's session closed (at once if it already has): the lock went with it, a standby may be taking over. */
const lockLost = (lock: Session, relayId: string): Promise<never> =>
  lock.closed.then((closed) => {
    throw new RelayFencedError(`relay ${relayId} lost its lock connection (${closed.message}); a standby may take over`);
  });

/** What a refused batch taught earlier sessions (kept across sessions, lost on exit: a restart relearns it). */
interface Recovery {
  isolateThrough: EntryId | null;
  readonly refused: Map<string, string>;
  /** What table capture ended sessions for, and the type OIDs the next session must load. */
  readonly reloads: Reloads;
  readonly types: Set<number>;
}

async function loadKeyring(sql: Sql): Promise<Keyring> {
  const keys = await sql<{ id: number; secret: Buffer }[]>`select id, secret from tributary.signing_keys`;
  return new Keyring(keys);
}

interface LoadedState {
  checkpoint: Checkpoint;
  offsets: Array<{ stream: string; partition: number; nextOffset: bigint }>;
  segments: Array<{ stream: string; segment: number }>;
}

/**
 * The newest migration this relay depends on, and an object it creates.
 * Migrations apply in order, so its presence says every one before it is
 * applied too: a relay newer than the schema stops here with NOT_MIGRATED,
 * not later on the first object it misses (without 0012's grants its COPY
 * into a segment is refused as a privilege, which reads like a missing
 * role). A catalog lookup: any role may make it. Moves with each migration
 * the relay comes to depend on.
 */
const NEWEST_MIGRATION_NEEDED = { name: "0013_time_marks", probe: "tributary.mark_times(int)" } as const;

async function checkSchema(sql: Sql, config: RelayConfig): Promise<void> {
  const [row] = await sql<{ ok: boolean }[]>`select to_regprocedure(${NEWEST_MIGRATION_NEEDED.probe}) is not null as ok`;
  if (row!.ok) return;
  throw new RelayFatalError(
    "NOT_MIGRATED",
    `the tributary schema is missing or older than this relay: it needs migration ${NEWEST_MIGRATION_NEEDED.name} and the ones before it. ` +
      `Run migrate() (@tributary/migrate) first (slot '${config.slotName}'), then start the relay again.`,
  );
}

async function loadState(sql: Sql, config: RelayConfig): Promise<LoadedState> {
  await checkSchema(sql, config);
  const [row] = await sql<{ commit_lsn: string; end_lsn: string; partial_commit_lsn: string | null; partial_events: string; version: string }[]>`
    select commit_lsn::text, end_lsn::text, partial_commit_lsn::text, partial_events::text, version::text
      from tributary.relay_checkpoints where slot_name = ${config.slotName}`;
  if (!row) {
    throw new RelayFatalError("NOT_MIGRATED", `no checkpoint for slot '${config.slotName}': run migrate() (@tributary/migrate) first (it creates the slot).`);
  }
  const offsets = await sql<{ stream: string; partition: number; next_offset: string }[]>`
    select stream, partition, next_offset::text from tributary.partition_offsets`;
  // The segment each stream writes to: its last one begun (first_offsets set).
  const segments = await sql<{ stream: string; segment: number }[]>`
    select stream, max(segment) as segment from tributary.segments where first_offsets is not null group by stream`;
  return {
    checkpoint: {
      commitLsn: Lsn.parse(row.commit_lsn),
      endLsn: Lsn.parse(row.end_lsn),
      partialCommitLsn: row.partial_commit_lsn ? Lsn.parse(row.partial_commit_lsn) : null,
      partialEvents: Number(row.partial_events),
      version: BigInt(row.version),
    },
    offsets: offsets.map((o) => ({ stream: o.stream, partition: o.partition, nextOffset: BigInt(o.next_offset) })),
    segments: segments.map((s) => ({ stream: s.stream, segment: s.segment })),
  };
}

/**
 * The slot must be the one the checkpoint was written for: the relay writes
 * a position to the checkpoint before it acknowledges it, so a slot whose
 * confirmed position is ahead of the checkpoint was created after it (by hand,
 * or dropped and re-created), and what was committed in between is missing.
 */
async function checkSlotMatchesCheckpoint(sql: Sql, slotName: string, confirmedFlushLsn: string, checkpoint: Checkpoint): Promise<void> {
  const confirmed = Lsn.parse(confirmedFlushLsn);
  if (confirmed > checkpoint.endLsn) {
    throw new RelayFatalError(
      "SLOT_GAP",
      `replication slot '${slotName}' starts at ${confirmedFlushLsn}, after the relay's checkpoint ${Lsn.format(checkpoint.endLsn)}: ` +
        `the slot was re-created (dropped and created again, or created by hand), and events committed in between are missing from the stream. ` +
        `Tributary will not go on silently. Investigate (who re-created it?), then to accept the gap and go on: ` +
        `UPDATE tributary.relay_checkpoints SET end_lsn = '${confirmedFlushLsn}' WHERE slot_name = '${slotName}'; and start the relay again.`,
    );
  }
  const others = await sql<{ slot_name: string }[]>`select slot_name from tributary.relay_checkpoints where slot_name <> ${slotName}`;
  if (others.length > 0) {
    throw new RelayFatalError("SECOND_SLOT", `slot '${others[0]!.slot_name}' already feeds this database's streams; a second slot would duplicate every event. Run the relay and its standbys with slotName: "${others[0]!.slot_name}".`);
  }
}

/** One relay session: from connecting to the stream ending (error or interrupt). */
const session = (config: RelayConfig, relayId: string, log: (m: string) => void, recovery: Recovery, metrics: RelayMetrics | null) =>
  Effect.gen(function* () {
    const writeTimeoutMs = config.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS;
    const setup = <A>(what: (signal: AbortSignal) => Promise<A>) =>
      Effect.tryPromise({ try: what, catch: (e) => fatalSetupError(toFatal(e), config) });
    const sql = yield* connect(config.databaseUrl, 4, writeTimeoutMs);
    yield* setup(() => checkWalLevel(sql));
    const lock = yield* lead(sql, config, log).pipe(Effect.mapError((e) => fatalSetupError(e instanceof Error && e.cause ? e.cause : e, config)));
    const lockConn = lock.sql;
    // The one connection batches are written on (a pool of one that is never
    // recycled, so its backend stays the one named in the lease).
    const writer = yield* connect(config.databaseUrl, 1, writeTimeoutMs, { max_lifetime: null });
    const [writerBackend] = yield* setup(() => writer<{ pid: number }[]>`select pg_backend_pid() as pid`);
    yield* setup(() => takeLease(lockConn, config.slotName, relayId, writerBackend!.pid, takeoverMs(config)));
    const slot = yield* setup(() => inspectSlot(sql, config.slotName));
    if (!slot) {
      return yield* Effect.fail(new RelayFatalError("NO_SLOT", `replication slot '${config.slotName}' does not exist: run migrate() (@tributary/migrate) first (it creates the slot).`));
    }
    if (config.decoder && slot.plugin !== config.decoder) {
      return yield* Effect.fail(new RelayFatalError("SLOT_PLUGIN_MISMATCH",
        `replication slot '${config.slotName}' uses the ${slot.plugin} decoder, not ${config.decoder}: start the relay with decoder: "${slot.plugin}" ` +
          `(the slot's decoder is fixed when migrate creates it).`));
    }
    const loaded = yield* setup(() => loadState(sql, config));
    yield* setup(() => checkSlotMatchesCheckpoint(sql, config.slotName, slot.confirmedFlushLsn, loaded.checkpoint));
    const keyring = yield* setup(() => loadKeyring(sql));
    const catalog = new TypeCatalog(sql);
    const captures = yield* setup(() => CaptureSet.load(sql, loaded.checkpoint.commitLsn, catalog, slot.plugin === "wal2json", [...recovery.types]));
    const chunks = new Chunks();
    yield* Effect.addFinalizer(() => Effect.sync(() => chunks.clear()));
    const snapshotter = new Snapshotter(sql, captures, chunks, catalog, {
      chunkRows: config.snapshotChunkRows ?? 2000,
      pollMs: config.snapshotPollMs ?? 1000,
      log,
    });
    const state = new RelayState(loaded.checkpoint, loaded.offsets, {
      maxBatchEvents: config.maxBatchEvents ?? 5000,
      maxBatchBytes: config.maxBatchBytes ?? 8 << 20,
    }, { keyring, refused: recovery.refused, isolateThrough: recovery.isolateThrough }, {
      captures,
      chunks,
      recent: new RecentCommits(),
      reloads: recovery.reloads,
      jsonOf: (oid, text) => {
        const type = catalog.known(oid);
        if (type) return columnJson(type, text);
        recovery.types.add(oid);
        if (recovery.reloads.once(`type:${oid}`)) throw new CaptureReloadError(`column type ${oid} is new to this session: loading the types again`, `type:${oid}`);
        return columnJson({ kind: "other", oid, name: `type ${oid}` }, text);
      },
      // wal2json sends table changes only to a session started with captures (wal2json.ts).
      restartOnCaptureStart: slot.plugin === "wal2json" && captures.size === 0,
      onBackfill: () => snapshotter.wake(),
    }, loaded.segments);
    // sslmode=prefer: the replication connection takes what the SQL session settled on (node-postgres cannot fall back).
    const preferTls = parseDatabaseUrl(config.databaseUrl).tls.kind === "prefer" && (yield* setup(() => sessionUsesTls(sql)));
    const source = yield* Effect.acquireRelease(
      Effect.sync(() => new ReplicationSource({
        connection: withSessionOptions(pgClientConfig(config.databaseUrl, { preferTls })),
        slotName: config.slotName,
        decoder: slot.plugin,
        captures: captures.size > 0,
        ...(config.statusIntervalMs !== undefined ? { statusIntervalMs: config.statusIntervalMs } : {}),
      })),
      (s) => Effect.promise(() => s.stop()),
    );
    const statusIntervalMs = config.statusIntervalMs ?? 5_000;
    const pump = new RelayPump(writer, state, source, config.slotName, relayId,
      { writeTimeoutMs, idleCheckpointMs: statusIntervalMs, ...(metrics ? { onWritten: (batch, seconds) => metrics.batchWritten(batch, seconds) } : {}) }, config.hooks);
    const keeper = new SegmentKeeper(sql, state, { intervalMs: config.retentionIntervalMs ?? 10_000, log, wake: () => pump.wake() });
    const watch = new SlotWatch(sql, {
      slot: config.slotName, intervalMs: config.alarmIntervalMs ?? 30_000, log, metrics,
      settings: { ...defaultSlotAlarmSettings, ...config.alarms },
    });
    yield* renewWhileProgressing(lockConn, pump, source, config, relayId, log);
    log(`active on slot '${slot.slotName}' (${slot.plugin}) from ${Lsn.format(loaded.checkpoint.endLsn)}`);
    if (metrics) {
      // The active relay reports its slot; a standby reports only that it is one.
      yield* Effect.acquireRelease(Effect.sync(() => {
        metrics.attach(sql);
        metrics.activeRelay(true);
      }), () => Effect.sync(() => {
        metrics.activeRelay(false);
        metrics.detach(sql);
      }));
    }
    config.onActive?.(pump);
    yield* Effect.tryPromise({ try: (signal) => {
      signal.addEventListener("abort", () => void source.stop());
      const streaming = source.run(loaded.checkpoint.endLsn, pump);
      // The snapshotter runs while the session streams; its error ends the session.
      const snapshots = new AbortController();
      void streaming.finally(() => snapshots.abort()).catch(() => undefined);
      snapshotter.run(snapshots.signal).catch((error: unknown) => source.abort(error));
      void keeper.run(snapshots.signal);
      void watch.run(snapshots.signal);
      return Promise.race([streaming, lockLost(lock, relayId)]);
    }, catch: (e) => fatalSetupError(e, config) });
  });

/**
 * Renews the lease every third of the takeover time while the relay makes
 * progress; a failed renewal (the lock connection lost) or a lease taken by
 * another relay ends the stream at once.
 */
const renewWhileProgressing = (lockConn: Sql, pump: RelayPump, source: ReplicationSource, config: RelayConfig, relayId: string, log: (m: string) => void) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const takeover = takeoverMs(config);
      let stalledLogged = false;
      let renewing = false;
      const timer = setInterval(() => {
        if (renewing) return;
        const stalledMs = pump.writeRunningMs();
        if (stalledMs > takeover / 2) {
          if (!stalledLogged) log(`a batch write has run for ${(stalledMs / 1000).toFixed(1)} s: not renewing the lease, so a standby may take over`);
          stalledLogged = true;
          return;
        }
        stalledLogged = false;
        renewing = true;
        // A renewal that does not answer within half the takeover time means
        // the lock connection is gone: a standby may already be taking over.
        let answered = false;
        const silence = setTimeout(() => {
          if (!answered) source.abort(new RelayFencedError(`the lease renewal of relay ${relayId} got no answer within ${takeover / 2} ms: its lock connection is gone`));
        }, takeover / 2);
        renewLease(lockConn, config.slotName, relayId, takeover).then(
          (held) => {
            answered = true;
            clearTimeout(silence);
            renewing = false;
            if (!held) source.abort(new RelayFencedError(`relay ${relayId} lost its lease on slot '${config.slotName}': another relay took over`));
          },
          (error: unknown) => {
            answered = true;
            clearTimeout(silence);
            source.abort(error);
          },
        );
      }, Math.max(50, Math.floor(takeoverMs(config) / 3)));
      return timer;
    }),
    (timer) => Effect.sync(() => clearInterval(timer)),
  );

/** The replication session prints values the way column-json.ts reads them (snapshotter.ts SESSION_SETTINGS). */
function withSessionOptions<C extends { options?: string }>(config: C): C {
  return { ...config, options: [config.options, sessionOptions()].filter(Boolean).join(" ") };
}

function toFatal(error: unknown): unknown {
  const e = error as { name?: string; code?: string; message?: string };
  if (e?.name === "MigrationError" || error instanceof TributaryConnectionError) return new RelayFatalError(e.code ?? "SETUP", e.message ?? String(error));
  return error;
}

function explainError(error: unknown): string {
  const e = error as { code?: string; message?: string };
  if (error instanceof BatchRefusedError) return error.message;
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
  const recovery: Recovery = { isolateThrough: null, refused: new Map(), reloads: new Reloads(), types: new Set() };
  const metrics = config.metrics ? new RelayMetrics(config.metrics, config.slotName) : null;
  return Effect.suspend(() => Effect.scoped(session(config, relayId, log, recovery, metrics))).pipe(
    // A session that ended to load what it lacked (table capture) starts again at once.
    Effect.tapError((error) => Effect.sync(() => {
      if (error instanceof CaptureReloadError) log(`${error.message}: starting a new session`);
    })),
    Effect.retry({ while: (error) => error instanceof CaptureReloadError }),
    Effect.flatMap(() => Effect.fail(new Error("replication stream ended"))),
    Effect.tapError((error) => Effect.sync(() => {
      if (error instanceof BatchRefusedError) learnFromRefusal(recovery, error, log);
      else if (isRetryable(error)) log(`${explainError(error)}; reconnecting with backoff`);
    })),
    Effect.retry({ schedule: retryPolicy, while: isRetryable }),
  ) as Effect.Effect<never, unknown>;
}

/** A refused batch of several entries is retried one entry per batch; a refused single entry is set aside. */
function learnFromRefusal(recovery: Recovery, error: BatchRefusedError, log: (m: string) => void): void {
  if (entryKey(error.first) === entryKey(error.last)) {
    recovery.refused.set(entryKey(error.first), error.reason);
    log(`the stream table refused message ${error.first.index} of the transaction committed at ${Lsn.format(error.first.commitLsn)} ` +
      `(${error.reason}): setting it aside in tributary.rejected_messages and going on`);
  } else {
    recovery.isolateThrough = error.last;
    log(`${error.message}; writing its entries one at a time to find the one it refuses`);
  }
}

export type { PumpStats };
