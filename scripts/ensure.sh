# Sourced by the other scripts: installs what a fresh Debian or Ubuntu machine lacks.
#   ensure_pkg PACKAGE COMMAND...   installs PACKAGE with apt-get unless one of COMMAND... exists
# (a command name on PATH or an absolute path). As root it installs; otherwise it prints the one
# command to run and fails, so nothing half-starts.

_apt_updated=""

have() {
  local c
  for c in "$@"; do
    case "$c" in
      /*) [ -x "$c" ] && return 0 ;;
      *) command -v "$c" >/dev/null 2>&1 && return 0 ;;
    esac
  done
  return 1
}

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
      echo "missing: $*. Run this once, then try again:" >&2
      echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends $*" >&2
    else
      echo "missing: $* (this script installs with apt-get on Debian or Ubuntu; install them with your system's package manager)" >&2
    fi
    exit 1
  fi
  echo "installing with apt-get: $*" >&2
  if [ -z "$_apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    _apt_updated=1
  fi
  # policy-rc.d: packages must not start their own services here (this script starts them with the
  # settings Hangar needs, and a container has no init to start them anyway).
  local policy=/usr/sbin/policy-rc.d own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 || rc=$?
  [ -n "$own_policy" ] && rm -f "$policy"
  return "$rc"
}

ensure_pkg() {
  local pkg="$1"
  shift
  have "$@" || apt_install "$pkg"
}
