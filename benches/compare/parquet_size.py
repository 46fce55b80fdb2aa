#!/usr/bin/env python3
"""Size of the same spans as a zstd-compressed Parquet file (one column per field and
attribute key), for the issue-3 size target.

    cargo run --release -p spanstore-benches --bin segment_load -- --spans 2000000 --jsonl /tmp/spans.jsonl
    python3 benches/compare/parquet_size.py /tmp/spans.jsonl

Needs pyarrow (`pip install pyarrow`).
"""
import os
import sys
import tempfile

import pyarrow.json as pj
import pyarrow.parquet as pq


def main() -> None:
    path = sys.argv[1]
    options = pj.ParseOptions(unexpected_field_behavior="infer")
    table = pj.read_json(path, read_options=pj.ReadOptions(block_size=64 << 20), parse_options=options)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "spans.parquet")
        pq.write_table(table, out, compression="zstd")
        size = os.path.getsize(out)
    rows = table.num_rows
    print(f"parquet (zstd): {size} bytes for {rows} spans = {size / rows:.1f} bytes/span, {table.num_columns} columns")


if __name__ == "__main__":
    main()
