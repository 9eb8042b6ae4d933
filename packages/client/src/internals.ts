/**
 * @tributary/client/internals — UNSTABLE: no compatibility promise, may change
 * in any release. The protocol pieces the services (relay, Kafka bridge), the
 * benchmarks and the tests build on. Applications use "@tributary/client".
 */

// A partition read raw, as PostgreSQL sent it (benchmarks of the bridge's path).
export { readRawPartition } from "./internal/events.ts";

// The group protocol's commit under a generation (invariants 8 and 9).
export { commitOffsets } from "./internal/consumer/offsets.ts";
export type { OffsetCommit } from "./internal/consumer/offsets.ts";

// One libpq URL for both drivers: postgres.js and node-postgres (the replication connection).
export { parseDatabaseUrl } from "./internal/connection/database-url.ts";
export type { DatabaseTarget, SslMode, TlsPolicy } from "./internal/connection/database-url.ts";
export { pgClientConfig, sessionUsesTls } from "./internal/connection/connect.ts";
export type { PgClientConfig } from "./internal/connection/connect.ts";

// When a replication slot needs an operator: the same rules in `tributary status`, its metrics and the relay's log.
export { defaultSlotAlarmSettings, slotAlarms, walKeepAlarm } from "./internal/slot-alarms.ts";
export type { SlotAlarm, SlotAlarmKind, SlotAlarmSettings, SlotFiguresForAlarms } from "./internal/slot-alarms.ts";
