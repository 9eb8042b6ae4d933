export { Cluster, findInstallation, freePort } from "./internal/cluster.ts";
export type { ClusterOptions, ClusterTls, Installation, ServerKind } from "./internal/cluster.ts";
export { KafkaBroker, kafkaAvailability, kafkaJars, kafkaVersion } from "./internal/kafka.ts";
export type { KafkaAvailability, KafkaBrokerOptions, KafkaSaslCredentials } from "./internal/kafka.ts";
export { createCertificateAuthority, issueCertificate } from "./internal/certificates.ts";
export type { CertificateAuthority, IssuedCertificate } from "./internal/certificates.ts";
export { ChildBundle, ChildLines, cliHeapLimit, repositoryRoot, spawnChild } from "./internal/child-process.ts";
export type { ChildBundleOptions, ChildLinesOptions, ChildSpawnOptions } from "./internal/child-process.ts";
export { userEnvironment } from "./internal/user-environment.ts";
