/**
 * Column types of captured tables, resolved from the type OIDs the decoders
 * give. Builtin types come from a fixed table (their OIDs are the same on
 * every server, pg_type.dat); other OIDs are looked up in pg_type, one query
 * per batch of new OIDs, following element and base types in that same
 * query, and cached until `forget()`.
 */
import type { Sql } from "postgres";

/** How the text of a base type becomes JSON (column-json.ts). */
export type ValueFormat =
  | "integer" // digits as they are: a JSON number, any size
  | "float" // a JSON number; NaN and ±Infinity as strings
  | "boolean"
  | "json" // the text is already JSON
  | "bytea" // base64
  | "date"
  | "timestamp"
  | "timestamptz"
  | "string"; // the text as a JSON string (numeric, uuid, time, interval, inet, ...)

export type ColumnType =
  | { readonly kind: "base"; readonly oid: number; readonly name: string; readonly format: ValueFormat }
  | { readonly kind: "enum"; readonly oid: number; readonly name: string }
  | { readonly kind: "domain"; readonly oid: number; readonly name: string; readonly base: ColumnType }
  /** `delimiter` is the element type's typdelim: `;` for box, `,` for the others. */
  | { readonly kind: "array"; readonly oid: number; readonly name: string; readonly element: ColumnType; readonly delimiter: string }
  /** Composite, range, multirange, pseudo, or a type no longer in pg_type: the text as a JSON string. */
  | { readonly kind: "other"; readonly oid: number; readonly name: string };

/** [oid, name, format, array oid, delimiter of the array's elements]. */
type BuiltinRow = readonly [number, string, ValueFormat, number, string?];

const BUILTIN_ROWS: readonly BuiltinRow[] = [
  [16, "bool", "boolean", 1000],
  [17, "bytea", "bytea", 1001],
  [18, "char", "string", 1002],
  [19, "name", "string", 1003],
  [20, "int8", "integer", 1016],
  [21, "int2", "integer", 1005],
  [22, "int2vector", "string", 1006],
  [23, "int4", "integer", 1007],
  [24, "regproc", "string", 1008],
  [25, "text", "string", 1009],
  [26, "oid", "integer", 1028],
  [27, "tid", "string", 1010],
  [28, "xid", "string", 1011],
  [29, "cid", "string", 1012],
  [30, "oidvector", "string", 1013],
  [114, "json", "json", 199],
  [142, "xml", "string", 143],
  [600, "point", "string", 1017],
  [601, "lseg", "string", 1018],
  [602, "path", "string", 1019],
  [603, "box", "string", 1020, ";"],
  [604, "polygon", "string", 1027],
  [628, "line", "string", 629],
  [650, "cidr", "string", 651],
  [700, "float4", "float", 1021],
  [701, "float8", "float", 1022],
  [718, "circle", "string", 719],
  [774, "macaddr8", "string", 775],
  [790, "money", "string", 791],
  [829, "macaddr", "string", 1040],
  [869, "inet", "string", 1041],
  [1042, "bpchar", "string", 1014],
  [1043, "varchar", "string", 1015],
  [1082, "date", "date", 1182],
  [1083, "time", "string", 1183],
  [1114, "timestamp", "timestamp", 1115],
  [1184, "timestamptz", "timestamptz", 1185],
  [1186, "interval", "string", 1187],
  [1266, "timetz", "string", 1270],
  [1560, "bit", "string", 1561],
  [1562, "varbit", "string", 1563],
  [1700, "numeric", "string", 1231],
  [2950, "uuid", "string", 2951],
  [3220, "pg_lsn", "string", 3221],
  [3614, "tsvector", "string", 3643],
  [3615, "tsquery", "string", 3645],
  [3802, "jsonb", "json", 3807],
  [4072, "jsonpath", "string", 4073],
  [5069, "xid8", "string", 271],
];

/** The rows of BUILTIN_ROWS, for the test that holds them against pg_type. */
export const BUILTIN_TYPES: readonly BuiltinRow[] = BUILTIN_ROWS;

const BUILTINS: ReadonlyMap<number, ColumnType> = new Map(
  BUILTIN_ROWS.flatMap(([oid, name, format, arrayOid, delimiter]): Array<[number, ColumnType]> => {
    const element: ColumnType = { kind: "base", oid, name, format };
    const array: ColumnType = { kind: "array", oid: arrayOid, name: `_${name}`, element, delimiter: delimiter ?? "," };
    return [[oid, element], [arrayOid, array]];
  }),
);

/** A builtin type (or an array of one) by OID, without a query. */
export function builtinType(oid: number): ColumnType | undefined {
  return BUILTINS.get(oid);
}

interface TypeRow {
  oid: number;
  typname: string;
  typtype: string;
  typelem: number;
  typbasetype: number;
  typcategory: string;
  typdelim: string;
  /** typelem's own array type is this one: a true array, not int2vector-like or point-like. */
  is_array: boolean;
}

type Batch = Promise<ReadonlyMap<number, ColumnType>>;

export class TypeCatalog {
  readonly #sql: Sql;
  readonly #cache = new Map<number, ColumnType>();
  /** OIDs of a query under way, so a concurrent caller waits for it instead of asking again. */
  readonly #pending = new Map<number, Batch>();
  #generation = 0;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** A builtin or cached type, without a query. */
  known(oid: number): ColumnType | undefined {
    return BUILTINS.get(oid) ?? this.#cache.get(oid);
  }

  async type(oid: number): Promise<ColumnType> {
    const [type] = await this.types([oid]);
    return type!;
  }

  /** The types of `oids`, in order; one query for all those not known yet. */
  async types(oids: readonly number[]): Promise<ColumnType[]> {
    const fresh = [...new Set(oids)].filter((oid) => this.known(oid) === undefined && !this.#pending.has(oid));
    if (fresh.length > 0) this.#lookUp(fresh);
    return Promise.all(
      oids.map(async (oid) => this.known(oid) ?? (await this.#pending.get(oid))?.get(oid) ?? missingType(oid)),
    );
  }

  /** Drops every cached type (a schema change may have re-created one); a query under way caches nothing. */
  forget(): void {
    this.#cache.clear();
    this.#pending.clear();
    this.#generation += 1;
  }

  #lookUp(oids: readonly number[]): void {
    const generation = this.#generation;
    const batch: Batch = this.#query(oids).then((rows) => {
      const types = resolveRows(oids, rows, (oid) => this.known(oid));
      if (generation === this.#generation) for (const [oid, type] of types) if (rows.has(oid)) this.#cache.set(oid, type);
      return types;
    });
    for (const oid of oids) this.#pending.set(oid, batch);
    const settle = () => {
      for (const oid of oids) if (this.#pending.get(oid) === batch) this.#pending.delete(oid);
    };
    batch.then(settle, settle);
  }

  async #query(oids: readonly number[]): Promise<ReadonlyMap<number, TypeRow>> {
    const rows = await this.#sql<TypeRow[]>`
      with recursive reached(oid) as (
        select unnest(${`{${oids.join(",")}}`}::pg_catalog.oid[])
        union
        select next.oid
          from reached
          join pg_catalog.pg_type t on t.oid = reached.oid
          cross join lateral (values (t.typelem), (t.typbasetype)) as next(oid)
         where next.oid <> 0
      )
      select t.oid, t.typname::text, t.typtype::text, t.typelem, t.typbasetype, t.typcategory::text, t.typdelim::text,
             coalesce(e.typarray = t.oid, false) as is_array
        from reached
        join pg_catalog.pg_type t on t.oid = reached.oid
        left join pg_catalog.pg_type e on e.oid = t.typelem`;
    return new Map(rows.map((row) => [row.oid, row]));
  }
}

/** A type OID pg_type no longer holds (dropped since): its values stay text. Not cached. */
function missingType(oid: number): ColumnType {
  return { kind: "other", oid, name: `(type ${oid}, not in pg_type)` };
}

/** Builds the types of `oids` from their rows, reaching element and base types through `rows` too. */
function resolveRows(
  oids: readonly number[],
  rows: ReadonlyMap<number, TypeRow>,
  known: (oid: number) => ColumnType | undefined,
): Map<number, ColumnType> {
  const built = new Map<number, ColumnType>();
  const resolve = (oid: number): ColumnType => {
    const done = known(oid) ?? built.get(oid);
    if (done !== undefined) return done;
    const row = rows.get(oid);
    const type = row === undefined ? missingType(oid) : fromRow(row, rows, resolve);
    built.set(oid, type);
    return type;
  };
  for (const oid of oids) resolve(oid);
  return built;
}

function fromRow(row: TypeRow, rows: ReadonlyMap<number, TypeRow>, resolve: (oid: number) => ColumnType): ColumnType {
  const { oid, typname: name } = row;
  switch (row.typtype) {
    case "e":
      return { kind: "enum", oid, name };
    // A domain copies its base's typcategory and typelem: look at typtype first.
    case "d":
      return { kind: "domain", oid, name, base: resolve(row.typbasetype) };
    case "b":
      if (row.typcategory === "A" && row.is_array) {
        const delimiter = rows.get(row.typelem)?.typdelim ?? ",";
        return { kind: "array", oid, name, element: resolve(row.typelem), delimiter };
      }
      // An extension's base type (citext, hstore, vector, ...): its text as a string.
      return { kind: "base", oid, name, format: "string" };
    default:
      return { kind: "other", oid, name };
  }
}
