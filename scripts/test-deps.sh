#!/usr/bin/env bash
# Tools the tests need beyond cargo, installed where missing: cargo-nextest; and, in a Python venv of
# the project's own (printed on stdout, for PATH), moto (an S3 + STS server) and boto3 (a real S3
# client, driving Hangar's own S3 endpoint) for the object-storage tests, and DuckDB (an independent
# reader of `hangar export`'s Parquet and JSON Lines files) for the export tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/toolchain.sh
if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "test-deps: installing cargo-nextest" >&2
  cargo install cargo-nextest --locked >&2
fi
have python3 || apt_install python3
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3-venv
venv="${HANGAR_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hangar}/test-venv"
if ! "$venv/bin/python3" -c 'import moto, boto3, duckdb' >/dev/null 2>&1 || [ ! -x "$venv/bin/moto_server" ]; then
  echo "test-deps: installing moto, boto3 and duckdb into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check \
    'moto[server]>=5,<6' 'boto3>=1.34,<2' 'duckdb>=1.1,<3' >&2
fi
echo "$venv/bin"
