"""The DuckDB baseline of the determination benchmark (tests/bench/determination.rs).

Reads the benchmark's scores (little-endian f64) and household numbers (little-endian
i64), one per household,
then times DuckDB assigning national deciles exactly as DTKS does —
`ntile(10) OVER (ORDER BY score, household)` into a table — and prints one JSON line:
seconds, and a checksum of the assignment (sum of decile * (household mod 1000003))
that the Rust side compares with its own.

    python duckdb_ntile.py SCORES_F64 HOUSEHOLDS_I64
"""

import json
import os
import sys
import time

import duckdb
import pyarrow as pa


def column(path: str, kind: pa.DataType) -> pa.Array:
    n = os.path.getsize(path) // 8
    with open(path, "rb") as f:
        return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(f.read())])


def main(scores_path: str, households_path: str) -> None:
    table = pa.table(
        {"s": column(scores_path, pa.float64()), "i": column(households_path, pa.int64())}
    )
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.register("loaded", table)
    # Loaded into DuckDB's own storage before the clock starts.
    con.execute("CREATE TABLE scores AS SELECT s, i FROM loaded")
    started = time.perf_counter()
    con.execute(
        "CREATE TABLE ranked AS SELECT i, ntile(10) OVER (ORDER BY s, i) AS d FROM scores"
    )
    seconds = time.perf_counter() - started
    checksum = con.execute("SELECT sum(d * (i % 1000003))::HUGEINT FROM ranked").fetchone()[0]
    print(
        json.dumps(
            {"seconds": seconds, "checksum": str(int(checksum)), "version": duckdb.__version__}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
