export { Cluster, findInstallation, freePort } from "./internal/cluster.ts";
export type { ClusterOptions, Installation, ServerKind } from "./internal/cluster.ts";
export { KafkaBroker, kafkaAvailability, kafkaJars, kafkaVersion } from "./internal/kafka.ts";
export type { KafkaAvailability, KafkaBrokerOptions, KafkaSaslCredentials } from "./internal/kafka.ts";
