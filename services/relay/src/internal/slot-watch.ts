/**
 * The active relay watches its own slot (docs/ARCHITECTURE.md "Slot
 * alarms"): every `intervalMs` it reads the slot's figures and logs each
 * alarm when it turns on and when it clears, and sets them in its metrics.
 * The rules are @tributary/client's, the ones `tributary status` shows. An
 * active relay is reading its slot, so "no active relay" is not its alarm
 * (a standby or `tributary status` sees that one). A failed read is skipped:
 * the watch never stops the relay.
 */
import type { Sql } from "postgres";
import { slotAlarms, walKeepAlarm, type SlotAlarm, type SlotAlarmSettings } from "@tributary/client/internals";
import { slotFigures, type RelayMetrics } from "./relay-metrics.ts";
import { sleep } from "./abortable-sleep.ts";

export interface SlotWatchOptions {
  readonly slot: string;
  readonly intervalMs: number;
  readonly settings: SlotAlarmSettings;
  readonly log: (message: string) => void;
  readonly metrics: RelayMetrics | null;
}

export class SlotWatch {
  /** The alarms on at the last look, by kind. */
  private readonly on = new Map<string, SlotAlarm>();

  constructor(private readonly sql: Sql, private readonly options: SlotWatchOptions) {}

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.once().catch(() => undefined);
      await sleep(this.options.intervalMs, signal);
    }
  }

  async once(): Promise<void> {
    const { slot, settings, log, metrics } = this.options;
    const figures = await slotFigures(this.sql, slot);
    if (figures === null) return;
    const alarms = [
      ...slotAlarms({ slot, walRetainedBytes: figures.retainedBytes, walStatus: figures.walStatus, active: true, inactiveSeconds: null }, settings),
      walKeepAlarm(figures.walKeepSize, settings),
    ].filter((a): a is SlotAlarm => a !== null);
    for (const alarm of alarms) {
      if (!this.on.has(alarm.kind)) log(`ALARM: ${alarm.message}`);
      this.on.set(alarm.kind, alarm);
    }
    for (const kind of [...this.on.keys()]) {
      if (alarms.some((a) => a.kind === kind)) continue;
      this.on.delete(kind);
      log(`alarm cleared: ${kind.replaceAll("_", " ")} on slot '${slot}'`);
    }
    metrics?.alarms(alarms.map((a) => a.kind));
  }
}
