# Sourced by scripts/run, scripts/test, scripts/bench and CI: makes sure cargo (stable Rust through
# rustup) and a C compiler (some crates build C) are there, installing them on a fresh Debian or
# Ubuntu machine where it can, or printing the one command to run.
. scripts/ensure.sh

if ! have cargo && [ -f "$HOME/.cargo/env" ]; then
  . "$HOME/.cargo/env"
fi
if ! have cargo; then
  if ! have rustup && [ "$(id -u)" = 0 ] && command -v apt-cache >/dev/null 2>&1 \
    && apt-cache policy rustup 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt_install rustup ca-certificates
  fi
  if have rustup; then
    echo "installing the stable Rust toolchain with rustup" >&2
    rustup toolchain install stable --profile minimal --component rustfmt,clippy >&2
    rustup default stable >&2
  else
    echo "missing: the Rust toolchain (cargo). Install it once with rustup, then try again:" >&2
    echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy" >&2
    exit 1
  fi
fi
ensure_pkg gcc cc gcc
[ -e /usr/include/stdio.h ] || apt_install libc6-dev
