// gen.mjs writes this folder's fixtures with DuckDB (an independent Parquet, CSV and JSON Lines writer).
// Run from a folder holding @duckdb/node-api (see README.md): node gen.mjs <this folder>
import { DuckDBInstance } from '@duckdb/node-api';
import path from 'node:path';

const out = process.argv[2] ?? '.';
const db = await DuckDBInstance.create(':memory:');
const c = await db.connect();
await c.run(`SET threads=1`); // one writer thread: row groups of exactly ROW_GROUP_SIZE (DuckDB's floor is 2048 rows)
const f = (name) => path.join(out, name).replaceAll("'", "''");

// 5000 rows in row groups of 2048, 2048 and 904; every value is a function of the row number i, so the Go tests recompute them.
await c.run(`
CREATE TABLE t AS
SELECT
  'id' || lpad(CAST(i AS VARCHAR), 5, '0')                    AS id,      -- string id
  ['red', 'green', 'blue'][(i % 3) + 1]                       AS colour,  -- few values: dictionary-encoded
  CAST(i % 97 AS FLOAT) / 4                                   AS f32,
  CAST(i % 89 AS DOUBLE) / 8                                  AS f64,
  CAST(i % 100 - 50 AS INTEGER)                               AS i32,
  CAST(i % 100 AS BIGINT) * 1000003                           AS i64,
  CAST(i % 100 AS SMALLINT)                                   AS i16,
  CAST(i % 200 AS UTINYINT)                                   AS u8,
  i % 2 = 0                                                   AS flag,
  CASE WHEN i % 10 = 3 THEN NULL ELSE CAST(i % 50 AS FLOAT) END AS maybe,  -- nulls at rows 3, 13, ...
  CASE WHEN i = 3000 THEN NULL ELSE CAST(i % 50 AS FLOAT) END   AS onenull, -- one null, row 3000
  [i % 50, i % 50 + 0.5, i % 50 + 0.25, -(i % 50)]::FLOAT[]    AS vec,     -- list<float>, length 4
  [i % 60, 2 * (i % 60), 3 * (i % 60), 4 * (i % 60)]::FLOAT[4] AS arr,     -- fixed_size_list<float, 4>
  CASE WHEN i = 4100 THEN [1.0, 2.0]::FLOAT[]
       ELSE [i % 40, 1, 2, 3]::FLOAT[] END                      AS ragged   -- length 4 except row 4100
FROM range(5000) r(i)
ORDER BY i`);

await c.run(`COPY t TO '${f('mixed_snappy.parquet')}' (FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE 2048)`);
await c.run(`COPY t TO '${f('mixed_zstd.parquet')}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 2048)`);

// Wide: 20 integer columns of 4096 rows in 2 row groups; values hashed so that every column costs about the same.
const cols = Array.from({ length: 20 }, (_, k) => `CAST(hash(i * 20 + ${k}) % 8 AS INTEGER) AS c${String(k).padStart(2, '0')}`);
await c.run(`COPY (SELECT ${cols.join(', ')} FROM range(4096) r(i) ORDER BY i)
  TO '${f('wide.parquet')}' (FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE 2000)`);

// CSV and JSON Lines: the first 300 rows, scalar columns (plus the list for JSON Lines).
const small = `SELECT id, colour, f32, f64, i32, i64, flag, maybe FROM t WHERE i < 300 ORDER BY i`;
const q = (s) => s.replace('FROM t WHERE i < 300', 'FROM (SELECT *, CAST(substr(id, 3) AS INT) AS i FROM t) WHERE i < 300');
await c.run(`COPY (${q(small)}) TO '${f('small.csv')}' (FORMAT csv, HEADER)`);
await c.run(`COPY (${q(small)}) TO '${f('small.csv.gz')}' (FORMAT csv, HEADER, COMPRESSION gzip)`);
const smallj = q(`SELECT id, colour, f32, f64, i32, i64, flag, maybe, vec FROM t WHERE i < 300 ORDER BY i`);
await c.run(`COPY (${smallj}) TO '${f('small.jsonl')}' (FORMAT json)`);
await c.run(`COPY (${smallj}) TO '${f('small.jsonl.gz')}' (FORMAT json, COMPRESSION gzip)`);

// What DuckDB itself reads back, for the README.
for (const name of ['mixed_snappy.parquet', 'mixed_zstd.parquet', 'wide.parquet']) {
  const r = await c.runAndReadAll(`SELECT count(DISTINCT path_in_schema) AS columns, count(DISTINCT row_group_id) AS groups,
    string_agg(DISTINCT compression, ',') AS comp FROM parquet_metadata('${f(name)}')`);
  console.log(name, JSON.stringify(r.getRowObjectsJson()));
}
const enc = await c.runAndReadAll(`SELECT path_in_schema, string_agg(DISTINCT encodings, ';') AS enc
  FROM parquet_metadata('${f('mixed_snappy.parquet')}') GROUP BY path_in_schema ORDER BY 1`);
console.log(JSON.stringify(enc.getRowObjectsJson()));
