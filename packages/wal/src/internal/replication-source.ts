/**
 * The replication connection: START_REPLICATION on a slot, decoded into
 * WalMessages and handed to one handler, one message at a time, with
 * backpressure (the socket is paused while the handler's promise is pending).
 *
 * We own the acknowledgements (DESIGN.md "Known traps"). pg-logical-replication
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
import { LogicalReplicationService } from "pg-logical-replication";
import { Lsn } from "./lsn.ts";
import { fromPgoutput, pgoutputPlugin } from "./pgoutput.ts";
import { fromWal2json, wal2jsonPlugin } from "./wal2json.ts";
import type { WalMessage } from "./wal-message.ts";

export type DecoderName = "pgoutput" | "wal2json";

export interface ReplicationHandler {
  /** Called for each message in order; a returned promise pauses reading until it settles. */
  onMessage(message: WalMessage): void | Promise<void>;
  /** The LSN up to which everything is durably handled (sent as flush position). */
  durableLsn(): Lsn;
  /** True when nothing received is waiting to be written. */
  isIdle(): boolean;
  /** The source advanced the durable position on an idle keepalive. */
  onIdleAdvance(lsn: Lsn): void;
}

export interface ReplicationSourceOptions {
  readonly connectionString: string;
  readonly slotName: string;
  readonly decoder: DecoderName;
  readonly statusIntervalMs?: number;
}

export class ReplicationSource {
  private service: LogicalReplicationService | null = null;
  private timer: NodeJS.Timeout | null = null;
  private received = 0;
  private handled = 0;
  private failed: ((error: unknown) => void) | null = null;

  constructor(private readonly options: ReplicationSourceOptions) {}

  /**
   * Streams from `startLsn` until stop() (resolves) or an error (rejects).
   * Handler errors end the stream: nothing after a failed message is handled.
   */
  run(startLsn: Lsn, handler: ReplicationHandler): Promise<void> {
    const { decoder } = this.options;
    const plugin = decoder === "wal2json" ? wal2jsonPlugin() : pgoutputPlugin();
    const toMessage = decoder === "wal2json" ? fromWal2json : fromPgoutput;
    countReceptions(plugin, () => this.received++);

    const service = new LogicalReplicationService(
      { connectionString: this.options.connectionString, application_name: `tributary-relay:${this.options.slotName}` },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } },
    );
    this.service = service;

    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (error: unknown) => {
        if (settled) return;
        settled = true;
        void this.stop().finally(() => reject(error));
      };
      this.failed = fail;

      service.on("data", (_lsn: string, raw: unknown) => {
        if (settled) return;
        try {
          const message = toMessage(raw as never);
          this.handled++;
          const result = message ? handler.onMessage(message) : undefined;
          if (result) return result.catch(fail);
        } catch (error) {
          fail(error);
        }
      });
      service.on("heartbeat", (lsn: string, _timestamp: number, shouldRespond: boolean) => {
        if (settled) return;
        if (this.handled === this.received && handler.isIdle()) {
          const serverLsn = Lsn.parse(lsn);
          if (serverLsn > handler.durableLsn()) handler.onIdleAdvance(serverLsn);
        }
        if (shouldRespond) this.sendStatus(handler.durableLsn(), false);
      });
      service.on("error", fail);
      service.on("start", () => {
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

function countReceptions(plugin: { parse(buffer: Buffer): unknown }, onReceive: () => void): void {
  const parse = plugin.parse.bind(plugin);
  plugin.parse = (buffer: Buffer) => {
    onReceive();
    return parse(buffer);
  };
}
