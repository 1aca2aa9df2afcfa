#!/usr/bin/env bash
# Tools the tests need beyond cargo: cargo-nextest, moto (an S3 + STS server from PyPI) and boto3 (a
# real S3 client, driving Hangar's own S3 endpoint) for the object-storage tests, and DuckDB (an
# independent reader of `hangar export`'s Parquet and JSON Lines files) for the export tests.
set -euo pipefail
if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
if ! command -v moto_server >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi
if ! python3 -c 'import boto3' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'boto3>=1.34,<2'
fi
if ! python3 -c 'import duckdb' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'duckdb>=1.1,<3'
fi
