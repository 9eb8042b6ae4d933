/**
 * TCP sockets for postgres.js with Nagle's algorithm off (docs/ARCHITECTURE.md,
 * Known traps: postgres.js leaves Nagle on).
 *
 * postgres.js 3.4.9 leaves Nagle on. A COPY (CopyData, then CopyDone) or a
 * pipelined query is sent as small packets, and the last one waits for the
 * server's delayed ACK of the previous one, ~40 ms on Linux: the relay's
 * commit → stream lag was 98 ms p50 instead of 8. node-postgres (the
 * replication connection) turns Nagle off itself.
 *
 * Given postgres.js's `socket` option, postgres.js uses the socket as it is
 * returned: it skips its own connect, sends the startup (or SSLRequest) at
 * once (Node buffers writes until the socket connects), still runs TLS over
 * it with `socket.host` as the server name (SNI), and still applies its
 * connect timeout and keepalive to it. A failed connect emits `error` and
 * `close` as usual, and postgres.js calls the factory again for its next
 * attempt; with several hosts (`postgres://a,b/db`) each attempt takes the
 * next host, as postgres.js's own rotation does (here per pool, not per
 * connection).
 */
import { connect, type Socket } from "node:net";

/** The part of postgres.js's parsed options it hands the `socket` option. */
export interface SocketTarget {
  readonly host: readonly string[];
  readonly port: readonly number[];
  /** A unix socket, e.g. /var/run/postgresql/.s.PGSQL.5432 (from a host that is a directory). */
  readonly path?: string | false | undefined;
}

export type SocketFactory = (target: SocketTarget) => Socket;

/** A factory of TCP_NODELAY sockets for one postgres.js pool. */
export function noDelaySockets(): SocketFactory {
  let attempt = 0;
  return ({ host, port, path }) => {
    // Nagle does not apply to unix sockets.
    if (path) return connect({ path });
    const index = attempt++ % host.length;
    const socket = connect({ host: host[index]!, port: port[index] ?? port[0]!, noDelay: true });
    // postgres.js reads these: the TLS server name, and the address in its connection errors.
    return Object.assign(socket, { host: host[index], port: port[index] ?? port[0] });
  };
}
