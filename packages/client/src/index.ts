/**
 * @tributary/client — append events inside your own PostgreSQL transaction.
 *
 *   import postgres from "postgres";
 *   import { append } from "@tributary/client";
 *   const sql = postgres(process.env.DATABASE_URL!);
 *   await sql.begin(async (tx) => {
 *     await tx`insert into orders ...`;
 *     await append(tx, { stream: "orders", key: orderId, type: "OrderPlaced", data: { total } });
 *   });
 */
export { append, appendBatch, createStream } from "./internal/append.ts";
export type { AppendEvent, Executor } from "./internal/append.ts";
export { TributaryInputError } from "./internal/errors.ts";
export type { AppendErrorCode } from "./internal/errors.ts";
export { murmur2, partitionFor } from "./internal/partitioner.ts";
