/**
 * When a replication slot needs an operator (docs/ARCHITECTURE.md "Slot
 * alarms"): the WAL it keeps passed a threshold, the server says it is
 * running out of room for it (wal_status extended or unreserved), no relay
 * has read it for too long, or the server has no limit on what a slot may
 * keep (max_slot_wal_keep_size = -1), so a stalled slot can fill the disk.
 * Pure rules over figures read elsewhere (`tributary status`, the relay),
 * so every place that shows alarms shows the same ones.
 */

export interface SlotAlarmSettings {
  /** WAL a slot may keep before it is an alarm (default 1 GiB). */
  readonly maxRetainedWalBytes: number;
  /** How long a slot may go without an active relay (default 300 s). */
  readonly maxInactiveSeconds: number;
  /** Whether an unlimited max_slot_wal_keep_size is an alarm (default true). */
  readonly walKeepLimitRequired: boolean;
}

export const defaultSlotAlarmSettings: SlotAlarmSettings = {
  maxRetainedWalBytes: 1024 ** 3,
  maxInactiveSeconds: 300,
  walKeepLimitRequired: true,
};

export interface SlotFiguresForAlarms {
  readonly slot: string;
  readonly walRetainedBytes: number | null;
  readonly walStatus: string | null;
  /** A relay holds the slot (streaming or about to). */
  readonly active: boolean;
  /** With no active relay: seconds since a relay last wrote its checkpoint. */
  readonly inactiveSeconds: number | null;
}

export type SlotAlarmKind = "retained_wal" | "wal_status" | "inactive" | "wal_keep_unlimited";

export interface SlotAlarm {
  readonly kind: SlotAlarmKind;
  /** The slot, or null for a server-wide alarm. */
  readonly slot: string | null;
  readonly message: string;
}

/** 512 B, 96 KiB, 300 MiB, 1.50 GiB. */
const mib = (bytes: number) =>
  bytes < 1024 ? `${bytes} B`
    : bytes < 1024 ** 2 ? `${Math.round(bytes / 1024)} KiB`
    : bytes < 1024 ** 3 ? `${Math.round(bytes / 1024 ** 2)} MiB`
    : `${(bytes / 1024 ** 3).toFixed(2)} GiB`;

export function slotAlarms(slot: SlotFiguresForAlarms, settings: SlotAlarmSettings): SlotAlarm[] {
  const alarms: SlotAlarm[] = [];
  const name = slot.slot;
  if (slot.walRetainedBytes !== null && slot.walRetainedBytes > settings.maxRetainedWalBytes) {
    alarms.push({
      kind: "retained_wal", slot: name,
      message: `slot '${name}' keeps ${mib(slot.walRetainedBytes)} of WAL, more than ${mib(settings.maxRetainedWalBytes)}: ` +
        `${slot.active ? "its relay is behind (see the lag)" : "no relay reads it"}; WAL the slot keeps is disk the server cannot free`,
    });
  }
  if (slot.walStatus === "extended" || slot.walStatus === "unreserved") {
    alarms.push({
      kind: "wal_status", slot: name,
      message: slot.walStatus === "extended"
        ? `slot '${name}' is past max_wal_size (wal_status extended): the server keeps WAL beyond its usual size for it`
        : `slot '${name}' is past max_slot_wal_keep_size (wal_status unreserved): its WAL will be removed at the next checkpoint and the slot lost unless its relay catches up now`,
    });
  }
  if (!slot.active && slot.inactiveSeconds !== null && slot.inactiveSeconds > settings.maxInactiveSeconds) {
    alarms.push({
      kind: "inactive", slot: name,
      message: `slot '${name}' has had no active relay for ${Math.round(slot.inactiveSeconds)} s (more than ${settings.maxInactiveSeconds} s): ` +
        `start tributary relay, or drop the slot if Tributary is gone (it keeps WAL until then)`,
    });
  }
  return alarms;
}

/** max_slot_wal_keep_size as current_setting() gives it: '-1' is unlimited. */
export function walKeepAlarm(maxSlotWalKeepSize: string | null, settings: SlotAlarmSettings): SlotAlarm | null {
  if (!settings.walKeepLimitRequired || maxSlotWalKeepSize === null || maxSlotWalKeepSize !== "-1") return null;
  return {
    kind: "wal_keep_unlimited", slot: null,
    message: "max_slot_wal_keep_size is unlimited (-1): a slot no relay reads keeps WAL until the disk is full. " +
      "Set it above the WAL a relay may fall behind by (ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf();), " +
      "knowing that a slot past it is lost; or turn this alarm off (--no-wal-keep-limit)",
  };
}
