/**
 * @tributary/kafka-bridge — forwards streams to Apache Kafka topics as a
 * consumer group member: offsets commit only after Kafka acknowledged.
 */
export { DEFAULT_BRIDGE_GROUP, DEFAULT_BRIDGE_PRODUCERS, startBridge } from "./internal/bridge.ts";
export type { BridgeConfig, BridgeHandle } from "./internal/bridge.ts";
export { BridgeError } from "./internal/errors.ts";
export type { BridgeErrorCode } from "./internal/errors.ts";
export { HEADER_PREFIX, toKafkaRecord } from "./internal/kafka-record.ts";
export type { KafkaRecord } from "./internal/kafka-record.ts";
export { topicName } from "./internal/topics.ts";
export type { TopicRoute } from "./internal/topics.ts";
