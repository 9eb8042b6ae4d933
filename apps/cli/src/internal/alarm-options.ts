/**
 * The slot alarm thresholds of the commands that show alarms (`tributary
 * status`, `tributary dashboard`; README "Slot alarms").
 */
import { defaultSlotAlarmSettings, type SlotAlarmSettings } from "@tributary/client/internals";
import { parseSize, UsageError } from "./args.ts";

export const alarmOptions = {
  "max-retained-wal": { type: "string" },
  "max-inactive": { type: "string" },
  "no-wal-keep-limit": { type: "boolean" },
} as const;

export const alarmUsage = `  --max-retained-wal SIZE  WAL a slot may keep, e.g. 500MB, 2GB (default 1GB)
  --max-inactive SECONDS   how long a slot may have no active relay (default 300)
  --no-wal-keep-limit  an unlimited max_slot_wal_keep_size is not an alarm`;

export function alarmSettings(values: Record<string, string | boolean | undefined>): SlotAlarmSettings {
  const inactive = values["max-inactive"];
  const seconds = inactive === undefined ? defaultSlotAlarmSettings.maxInactiveSeconds : Number(inactive);
  if (!(Number.isFinite(seconds) && seconds > 0)) throw new UsageError(`--max-inactive must be a positive number of seconds, not '${String(inactive)}'`);
  const wal = values["max-retained-wal"];
  return {
    maxRetainedWalBytes: typeof wal === "string" ? parseSize(wal, "--max-retained-wal") : defaultSlotAlarmSettings.maxRetainedWalBytes,
    maxInactiveSeconds: seconds,
    walKeepLimitRequired: values["no-wal-keep-limit"] !== true,
  };
}
