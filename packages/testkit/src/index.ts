export { Cluster, findInstallation, freePort } from "./internal/cluster.ts";
export type { ClusterOptions, Installation, ServerKind } from "./internal/cluster.ts";
