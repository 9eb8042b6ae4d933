/**
 * `sql.begin` that survives its connection dying (docs/ARCHITECTURE.md, Known
 * traps: postgres.js writes to a closed socket).
 *
 * When the callback of `sql.begin` fails, postgres.js sends ROLLBACK on the
 * transaction's connection; when it returns, COMMIT. If that connection has
 * closed (the server restarted, the backend was terminated, the network
 * dropped), the write throws outside any promise and ends the process
 * (porsager/postgres#1208). `sql.begin` itself learns the close: its promise
 * rejects with CONNECTION_CLOSED when its connection closes. `transaction`
 * listens to that, and once it fired:
 *  - the callback's queries are refused (ConnectionClosedError, nothing sent),
 *  - neither ROLLBACK nor COMMIT is sent (the server rolled the transaction
 *    back when the session ended): the callback's end is held back forever,
 *    and the caller gets sql.begin's CONNECTION_CLOSED.
 * No error code is interpreted: an error the callback throws may come from
 * another connection (a handler's own query), and then ROLLBACK is due.
 *
 * Residual window: sql.begin's rejection reaches us a few promise turns after
 * the queries of the transaction failed. A callback that catches a failure
 * of its own transaction's query and goes on with another query (or returns)
 * in those same turns still writes to the closed socket. A failed query ends
 * a PostgreSQL transaction anyway: let it throw.
 */
import type { Sql, TransactionSql } from "postgres";
import { ConnectionClosedError, refuseAfterClose, type ClosedState } from "./closed-connection.ts";

/**
 * Runs `fn` in a transaction on one connection of `sql`, like `sql.begin`
 * (`mode` as its options: "isolation level repeatable read read only"). If
 * the connection closes meanwhile, rejects with CONNECTION_CLOSED: nothing of
 * the transaction was committed, unless it closed while COMMIT was on its way
 * (then the outcome is unknown, as with any lost COMMIT).
 */
export function transaction<T>(sql: Sql, fn: (tx: TransactionSql) => Promise<T>): Promise<T>;
export function transaction<T>(sql: Sql, mode: string, fn: (tx: TransactionSql) => Promise<T>): Promise<T>;
export function transaction<T>(sql: Sql, ...args: [(tx: TransactionSql) => Promise<T>] | [string, (tx: TransactionSql) => Promise<T>]): Promise<T> {
  const [mode, fn] = args.length === 1 ? ["", args[0]] : args;
  const state: ClosedState = { closed: null };
  const done = sql.begin(mode, (tx) => runUnlessClosed(tx, state, fn)) as Promise<T>;
  // While `fn` runs, sql.begin rejects only when its connection closed.
  done.catch((error: unknown) => {
    state.closed ??= new ConnectionClosedError(
      `the transaction's connection to PostgreSQL closed (${(error as Error)?.message ?? error}): the server rolled it back; the query was not sent`,
    );
  });
  return done;
}

/** `fn` on `tx`, unless the connection closed: then the promise never settles, so postgres.js sends neither COMMIT nor ROLLBACK. */
async function runUnlessClosed<T>(tx: TransactionSql, state: ClosedState, fn: (tx: TransactionSql) => Promise<T>): Promise<T> {
  const savepoint = (...args: unknown[]) => {
    const body = args.pop();
    if (typeof body !== "function") return (tx.savepoint as (...a: unknown[]) => unknown)(...args, body);
    // postgres.js sends ROLLBACK TO SAVEPOINT when the body fails: same rule as the transaction's.
    return (tx.savepoint as (...a: unknown[]) => unknown)(...args, (inner: TransactionSql) => runUnlessClosed(inner, state, body as typeof fn));
  };
  const guarded = refuseAfterClose(tx, state, { savepoint });
  let result: T;
  try {
    result = await fn(guarded);
  } catch (error) {
    // The close reaches `state` a few promise turns after the queries' errors: look once they ran.
    await new Promise((resolve) => setImmediate(resolve));
    if (state.closed) return never();
    throw error;
  }
  if (state.closed) return never();
  return result;
}

/** Held back for good; nothing refers to it once its callers are gone, so it is collected with them. */
const never = () => new Promise<never>(() => {});
