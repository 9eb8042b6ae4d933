/**
 * One PostgreSQL session for state that lives on a connection: a session
 * advisory lock, a VACUUM next to it (docs/ARCHITECTURE.md, Known traps:
 * postgres.js writes to a closed socket).
 *
 * Not `sql.reserve()`: a reserved connection that closed still takes
 * queries and writes them to the socket postgres.js has set to null
 * (porsager/postgres#1208), which ends the process; and releasing it puts
 * the closed connection back among the pool's open ones, where the next
 * query does the same. A session is a pool of one connection instead (the
 * caller's options: URL, TLS, password, settings), never recycled, whose
 * `onclose` says the session ended: from then on its sql refuses every
 * query (ConnectionClosedError) rather than run it on a new connection that
 * holds none of the session's state, and `closed` resolves.
 */
import postgres, { type Options, type Sql } from "postgres";
import { ConnectionClosedError, refuseAfterClose, type ClosedState } from "./closed-connection.ts";

export interface Session {
  /** Queries on the session's connection; refused once it closed. */
  readonly sql: Sql;
  /** Resolves (never rejects) when the connection closed: lost, failed to open, or ended by end(). */
  readonly closed: Promise<ConnectionClosedError>;
  /** Ends the session (its locks go with it); `timeout` in seconds, as sql.end's. */
  end(options?: { timeout?: number }): Promise<void>;
}

/** A session with `sql`'s connection options; it connects on its first query. */
export function openSession(sql: Sql): Session {
  const state: ClosedState = { closed: null };
  let reportClosed: (error: ConnectionClosedError) => void = () => {};
  const closed = new Promise<ConnectionClosedError>((resolve) => (reportClosed = resolve));
  // postgres.js takes parsed options as they are (its own LISTEN connection is made this way).
  const pool = postgres({
    ...sql.options,
    max: 1,
    max_lifetime: null,
    idle_timeout: null,
    onclose: () => {
      if (state.closed) return;
      state.closed = new ConnectionClosedError("the session's connection to PostgreSQL closed (its locks and settings went with it): the query was not sent");
      reportClosed(state.closed);
    },
  } as unknown as Options<{}>);
  return {
    sql: refuseAfterClose(pool, state),
    closed,
    end: (options) => pool.end(options),
  };
}

/** `fn` on a session of its own, ended afterwards (which releases its session locks). */
export async function withSession<T>(sql: Sql, fn: (session: Sql) => Promise<T>): Promise<T> {
  const session = openSession(sql);
  try {
    return await fn(session.sql);
  } finally {
    await session.end({ timeout: 5 });
  }
}
