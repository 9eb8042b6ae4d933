/**
 * The replication connection: START_REPLICATION on a slot, decoded into
 * WalMessages and handed to one handler, synchronously and in order.
 *
 * Backpressure is the handler's: it calls pause() when it cannot take more
 * and resume() when it can. Messages already read from the socket when it
 * pauses (at most one socket read) are still delivered; the handler keeps
 * them. The library's own flow control is off: it awaits a promise per
 * message, which cost more CPU than decoding the message did.
 *
 * We own the acknowledgements (docs/ARCHITECTURE.md "Known traps"). pg-logical-replication
 * acknowledges the last *received* LSN on a timer even with auto-ack off, and
 * re-subscribing an instance restarts from the last received LSN; so its timer
 * is off, auto-ack is off, a new service instance is built per start, and the
 * standby status we send always carries the relay's *durable* LSN, never a
 * received one.
 *
 * Status updates go out every `statusIntervalMs` whatever the handler is doing
 * (a paused socket still writes), so wal_sender_timeout never fires while the
 * relay is busy. Each carries a reply request; the server's keepalive answer
 * carries its sent position, which we may acknowledge only when every message
 * received before it has been handled and the handler is idle (nothing
 * unwritten): then no committed transaction lies before that position unread.
 * That lets an idle database (or one busy with other tables) release WAL.
 *
 * On a crash nothing here is persistent: the caller restarts from its
 * checkpoint with a new source.
 */
import type { ClientConfig } from "pg";
import { LogicalReplicationService } from "pg-logical-replication";
import type { Decoder } from "@tributary/core";
import { Lsn } from "./lsn.ts";
import { pgoutputPlugin } from "./pgoutput.ts";
import { wal2jsonPlugin } from "./wal2json.ts";
import type { WalMessage } from "./wal-message.ts";

export interface ReplicationHandler {
  /** Called for each message, in order; may call pause() / resume(). */
  onMessage(message: WalMessage): void;
  /** The LSN up to which everything is durably handled (sent as flush position). */
  durableLsn(): Lsn;
  /** True when nothing delivered is waiting to be written. */
  isIdle(): boolean;
  /** The source advanced the durable position on an idle keepalive. */
  onIdleAdvance(lsn: Lsn): void;
}

export interface ReplicationSourceOptions {
  /**
   * Where and how to connect (host, user, password, TLS options): built by
   * the caller from the same URL as its SQL connections (@tributary/client's
   * pgClientConfig), so both verify TLS alike. A connection string here would
   * let node-postgres re-read sslmode its own way.
   */
  readonly connection: ClientConfig;
  readonly slotName: string;
  readonly decoder: Decoder;
  readonly statusIntervalMs?: number;
  /** Whether any table is captured (wal2json then sends table changes; pgoutput follows its publication). */
  readonly captures?: boolean;
}

export class ReplicationSource {
  private service: LogicalReplicationService | null = null;
  private timer: NodeJS.Timeout | null = null;
  private paused = false;
  private failed: ((error: unknown) => void) | null = null;

  constructor(private readonly options: ReplicationSourceOptions) {}

  /**
   * Streams from `startLsn` until stop() (resolves) or an error (rejects).
   * Handler errors end the stream: nothing after a failed message is handled.
   */
  run(startLsn: Lsn, handler: ReplicationHandler): Promise<void> {
    const { decoder } = this.options;
    const plugin = decoder === "wal2json" ? wal2jsonPlugin({ captures: this.options.captures ?? false }) : pgoutputPlugin();

    const service = new LogicalReplicationService(
      { ...this.options.connection, application_name: `tributary-relay:${this.options.slotName}` },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    this.service = service;
    this.paused = false;

    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (error: unknown) => {
        if (settled) return;
        settled = true;
        void this.stop().finally(() => reject(error));
      };
      this.failed = fail;

      // Our plugins' parse() returns a WalMessage, null (not ours) or the decoding error.
      service.on("data", (lsn: string, message: WalMessage | Error | null) => {
        if (settled || message === null) return;
        if (message instanceof Error) return fail(message);
        try {
          // A change's own LSN is the XLogData header's (the decoders do not repeat it).
          if (message.kind === "change") message.lsn = Lsn.parse(lsn);
          handler.onMessage(message);
        } catch (error) {
          fail(error);
        }
      });
      service.on("heartbeat", (lsn: string, _timestamp: number, shouldRespond: boolean) => {
        if (settled) return;
        // Messages are delivered synchronously in arrival order, so every
        // message sent before this keepalive has reached the handler.
        if (handler.isIdle()) {
          const serverLsn = Lsn.parse(lsn);
          if (serverLsn > handler.durableLsn()) handler.onIdleAdvance(serverLsn);
        }
        if (shouldRespond) this.sendStatus(handler.durableLsn(), false);
      });
      service.on("error", fail);
      service.on("start", () => {
        if (!this.socket()) {
          fail(new Error("cannot reach the replication socket to apply backpressure (pg-logical-replication's internals changed; pin 2.5.0)"));
          return;
        }
        this.timer = setInterval(() => this.sendStatus(handler.durableLsn(), true), this.options.statusIntervalMs ?? 5_000);
        this.timer.unref();
      });

      service.subscribe(plugin, this.options.slotName, Lsn.format(startLsn)).then(
        () => {
          if (settled) return;
          settled = true;
          resolve();
        },
        fail,
      );
    });
  }

  /** Stops reading from the socket (messages of the current read still arrive). */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket()?.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket()?.resume();
  }

  /**
   * The replication socket. pg-logical-replication (pinned) keeps its pg
   * connection in `_connection`; pg exposes the socket as `connection.stream`.
   * Pausing it is what the library's own flow control does.
   */
  private socket(): { pause(): void; resume(): void } | undefined {
    const connection = (this.service as unknown as { _connection?: { stream?: { pause(): void; resume(): void } } } | null)?._connection;
    return connection?.stream;
  }

  /** Sends a standby status update with `lsn` as written, flushed and applied position. */
  sendStatus(lsn: Lsn, requestReply: boolean): void {
    // The library reports lsn + 1 ("last byte + 1"); we must report exactly the
    // commit end LSN: one byte more would skip a transaction whose commit
    // record starts right there after a restart.
    if (lsn <= 0n || !this.service) return;
    void this.service.acknowledge(Lsn.format(lsn - 1n), requestReply).catch(() => undefined);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const service = this.service;
    this.service = null;
    this.failed = null;
    if (service) await service.destroy().catch(() => undefined);
  }

  /** Ends a running stream with an error (e.g. the relay lost its lock). */
  abort(error: unknown): void {
    this.failed?.(error);
  }
}
