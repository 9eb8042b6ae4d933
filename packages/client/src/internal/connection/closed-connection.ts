/**
 * Refusing queries on a connection that closed (docs/ARCHITECTURE.md, Known
 * traps: postgres.js writes to a closed socket).
 *
 * postgres.js 3.4.9 sets a connection's socket to null when it closes. A
 * query sent afterwards on a connection pinned by `sql.begin` or
 * `sql.reserve` throws a TypeError from a setImmediate, outside any promise
 * (porsager/postgres#1208): the process dies. `transaction` and `openSession`
 * learn that their connection closed and hand their callers an sql that
 * refuses every query from then on with a ConnectionClosedError, sending
 * nothing. The check happens when the query is built: build and await a
 * query in one go (`await tx\`...\``), never build it before another await.
 */
import type { Sql, TransactionSql } from "postgres";
import { TributaryConnectionError } from "../errors.ts";

/** A query not sent: its connection (a transaction's, a session's) had closed. Code CONNECTION_CLOSED, as postgres.js's own. */
export class ConnectionClosedError extends TributaryConnectionError {
  constructor(message: string) {
    super("CONNECTION_CLOSED", message);
  }
}

/** Whether the connection closed: once set, the error every query is refused with. */
export interface ClosedState {
  closed: ConnectionClosedError | null;
}

// The methods of an sql that send a query or open a transaction; the others
// (json, array, typed, …) only build values.
const sending = new Set<PropertyKey>(["unsafe", "file", "notify", "begin", "reserve", "savepoint"]);

/**
 * `sql`, refusing every query once `state.closed` is set. `override` replaces
 * methods (a transaction wraps `savepoint`); they are refused too.
 */
export function refuseAfterClose<S extends Sql | TransactionSql>(sql: S, state: ClosedState, override: Record<string, (...args: never[]) => unknown> = {}): S {
  const check = () => {
    if (state.closed) throw state.closed;
  };
  return new Proxy(sql, {
    apply(target, thisArg, args) {
      check();
      return Reflect.apply(target as (...a: unknown[]) => unknown, thisArg, args);
    },
    get(target, key, receiver) {
      const value = typeof key === "string" && key in override ? override[key] : (Reflect.get(target, key, receiver) as unknown);
      if (!sending.has(key) || typeof value !== "function") return value;
      return (...args: unknown[]) => {
        check();
        return Reflect.apply(value, target, args);
      };
    },
  });
}
