#!/usr/bin/env python3
"""An independent reader of `hangar export`'s files for the export tests: DuckDB (PyPI `duckdb`,
installed by scripts/test-deps.sh), which shares no code with Hangar.

  export_read.py read FILE parquet|jsonl   the rows as DuckDB reads them, in file order: one JSON array
  export_read.py telemetry FILE parquet|jsonl   the same for a telemetry export
  export_read.py schema FILE               the Parquet file's columns and their DuckDB types
  export_read.py summary FILE              a Parquet file's row count, distinct positions, and whether
                                           positions rise strictly in file order
  export_read.py rss CMD...                runs CMD; prints its exit code, stderr and peak resident
                                           memory (the kernel's rusage of that one child, from wait4)
"""
import json
import os
import subprocess
import sys

COLUMNS = (
    "global_position, epoch_us(recorded_at) AS recorded_us, aggregate_type, aggregate_id, sequence, "
    "event_type, event_version, payload::VARCHAR AS payload, metadata::VARCHAR AS metadata"
)
JSONL_TYPES = {
    "global_position": "BIGINT",
    "recorded_at": "TIMESTAMPTZ",
    "aggregate_type": "VARCHAR",
    "aggregate_id": "VARCHAR",
    "sequence": "BIGINT",
    "event_type": "VARCHAR",
    "event_version": "VARCHAR",
    "payload": "JSON",
    "metadata": "JSON",
}


def connect():
    import duckdb

    con = duckdb.connect()
    # one thread: rows come back in the order the file holds them
    con.execute("SET threads TO 1")
    con.execute("SET TimeZone = 'UTC'")
    return con


def read(path, fmt):
    con = connect()
    if fmt == "parquet":
        sql = f"SELECT {COLUMNS} FROM read_parquet(?, file_row_number = true) ORDER BY file_row_number"
        rows = con.execute(sql, [path]).fetchall()
    else:
        sql = f"SELECT {COLUMNS} FROM read_json(?, format = 'newline_delimited', columns = {JSONL_TYPES!r})"
        rows = con.execute(sql, [path]).fetchall()
    names = [
        "global_position", "recorded_us", "aggregate_type", "aggregate_id", "sequence",
        "event_type", "event_version", "payload", "metadata",
    ]
    print(json.dumps([dict(zip(names, r)) for r in rows]))


TELEMETRY_COLUMNS = (
    "stream_sequence, epoch_us(stored_at) AS stored_us, epoch_us(received_at) AS received_us, sn, kind, "
    "mqtt_topic, payload::VARCHAR AS payload"
)
TELEMETRY_TYPES = {
    "stream_sequence": "BIGINT",
    "stored_at": "TIMESTAMPTZ",
    "received_at": "TIMESTAMPTZ",
    "sn": "VARCHAR",
    "kind": "VARCHAR",
    "mqtt_topic": "VARCHAR",
    "payload": "JSON",
}


def telemetry(path, fmt):
    con = connect()
    if fmt == "parquet":
        src = "read_parquet(?, file_row_number = true) ORDER BY file_row_number"
    else:
        src = f"read_json(?, format = 'newline_delimited', columns = {TELEMETRY_TYPES!r})"
    rows = con.execute(f"SELECT {TELEMETRY_COLUMNS} FROM {src}", [path]).fetchall()
    names = ["stream_sequence", "stored_us", "received_us", "sn", "kind", "mqtt_topic", "payload"]
    print(json.dumps([dict(zip(names, r)) for r in rows]))


def schema(path):
    con = connect()
    rows = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [path]).fetchall()
    print(json.dumps([[r[0], r[1]] for r in rows]))


def summary(path):
    con = connect()
    rows, distinct, ordered = con.execute(
        "SELECT count(*), count(DISTINCT global_position), "
        "coalesce(bool_and(global_position > previous), true) FROM "
        "(SELECT global_position, lag(global_position) OVER (ORDER BY file_row_number) AS previous "
        " FROM read_parquet(?, file_row_number = true))",
        [path],
    ).fetchone()
    print(json.dumps({"rows": rows, "distinct_positions": distinct, "ordered": ordered}))


def rss(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    print(json.dumps({"status": p.returncode, "max_rss_kib": usage.ru_maxrss, "stderr": err.decode(errors="replace")}))


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "read":
        read(sys.argv[2], sys.argv[3])
    elif what == "telemetry":
        telemetry(sys.argv[2], sys.argv[3])
    elif what == "schema":
        schema(sys.argv[2])
    elif what == "summary":
        summary(sys.argv[2])
    elif what == "rss":
        rss(sys.argv[2:])
    else:
        sys.exit(f"unknown command {what}")
