#!/usr/bin/env bash
# Starts whichever of PostgreSQL, NATS (JetStream) and Mosquitto is not answering on loopback, with
# the same commands the development machines use. Safe to run any number of times. On a fresh Debian
# or Ubuntu machine it first installs what is missing (apt-get, as root; otherwise it prints the one
# command to run).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure.sh

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 50); do port_open "$1" && return 0; sleep 0.2; done
  echo "services: nothing answers on port $1 ($2)" >&2
  return 1
}

if ! port_open 5432; then
  fresh_pg=""
  if ! have pg_ctlcluster || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql
    fresh_pg=1
  fi
  echo "services: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
  wait_port 5432 postgresql
  if [ -n "$fresh_pg" ] && ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
    # A cluster this script just installed asks for a password on TCP; Hangar's local default
    # (postgres://postgres@127.0.0.1:5432/hangar) is the development set-up of trust on loopback.
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    echo "services: letting the postgres role in over loopback without a password ($hba)" >&2
    { printf 'host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust\n'; cat "$hba"; } >"$hba.new"
    chown --reference="$hba" "$hba.new" && chmod --reference="$hba" "$hba.new" && mv "$hba.new" "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
fi

if ! port_open 4222; then
  ensure_pkg nats-server nats-server /usr/sbin/nats-server
  nats="$(command -v nats-server || echo /usr/sbin/nats-server)"
  echo "services: starting nats-server with JetStream" >&2
  mkdir -p /var/lib/nats-server
  # The pid file makes "already running" mean this server, not any nats-server on the machine.
  start-stop-daemon --start --oknodo --background --make-pidfile --pidfile /run/hangar-nats-server.pid \
    --exec "$nats" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port 4222 nats-server
fi

if ! port_open 1883; then
  ensure_pkg mosquitto mosquitto /usr/sbin/mosquitto
fi

# Mosquitto with Hangar's settings (mqtt-bridge/mosquitto.conf: queue and in-flight limits,
# persistence): installed as a drop-in of the machine's configuration, and a broker that was
# started before the drop-in was installed is restarted once (Mosquitto does not apply the queue
# limits on a reload signal).
MOSQUITTO_CONF=/etc/mosquitto/mosquitto.conf
HANGAR_MOSQUITTO="$PWD/mqtt-bridge/mosquitto.conf"
# DRC's WebSocket listener for DJI's web client, a drop-in of its own (it adds a listener).
HANGAR_MOSQUITTO_DRC="$PWD/mqtt-bridge/mosquitto-drc.conf"

mosquitto_pid() {
  local pid
  pid=$(ss -ltnpH 'sport = :1883' 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)
  [ -n "$pid" ] && echo "$pid"
}

# Port 8083 (DRC's WebSocket listener) is held by something other than Mosquitto.
drc_port_taken() { port_open 8083 && ! ss -ltnpH 'sport = :8083' 2>/dev/null | grep -q '"mosquitto"'; }

configure_mosquitto() {
  local dir dropin drc
  dir=$(awk '$1 == "include_dir" { print $2; exit }' "$MOSQUITTO_CONF" 2>/dev/null || true)
  dropin="${dir:-/etc/mosquitto/conf.d}/hangar.conf"
  drc="$(dirname "$dropin")/hangar-drc.conf"
  if [ -n "$dir" ] && cmp -s "$HANGAR_MOSQUITTO" "$dropin" && { cmp -s "$HANGAR_MOSQUITTO_DRC" "$drc" || drc_port_taken; }; then
    echo "$dropin"
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "services: Mosquitto lacks Hangar's settings (it drops messages past 1,000 queued per client); run: sudo $0" >&2
    return 1
  fi
  echo "services: installing Hangar's Mosquitto settings as $dropin" >&2
  mkdir -p "$(dirname "$dropin")"
  if [ -z "$dir" ]; then
    printf '\ninclude_dir %s\n' "$(dirname "$dropin")" >> "$MOSQUITTO_CONF"
  fi
  cp "$HANGAR_MOSQUITTO" "$dropin"
  # a listener on a port someone else holds would keep the broker from starting at all
  if cmp -s "$HANGAR_MOSQUITTO_DRC" "$drc" || ! drc_port_taken; then
    cp "$HANGAR_MOSQUITTO_DRC" "$drc"
  else
    echo "services: port 8083 is taken; DRC's WebSocket listener is not installed (HANGAR_DRC_MQTT_URL)" >&2
  fi
  echo "$dropin"
}

# The checksum of Hangar's drop-ins next to `$1` (hangar.conf), as the stamp records it.
dropins_sum() { cat "$1" "$(dirname "$1")/hangar-drc.conf" 2>/dev/null | cksum; }

# The broker on port 1883 that this script last saw carry the drop-in: "<pid> <drop-in checksum>".
STAMP=/run/hangar-mosquitto.stamp
stamp() { [ "$(id -u)" = 0 ] && echo "$1 $(dropins_sum "$2")" > "$STAMP" || true; }

if [ -f "$MOSQUITTO_CONF" ] && dropin=$(configure_mosquitto) && pid=$(mosquitto_pid); then
  if [ "$(cat "$STAMP" 2>/dev/null)" != "$pid $(dropins_sum "$dropin")" ]; then
    started=$(date -d "$(ps -o lstart= -p "$pid")" +%s)
    installed=$( (stat -c %Y "$dropin" "$MOSQUITTO_CONF" "$(dirname "$dropin")"/hangar-*.conf 2>/dev/null || true) | sort -n | tail -n 1)
    if ! tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "-c $MOSQUITTO_CONF"; then
      echo "services: the Mosquitto on port 1883 was not started from $MOSQUITTO_CONF; Hangar's settings may be missing" >&2
    elif [ "$started" -le "$installed" ]; then
      echo "services: restarting mosquitto (pid $pid) with Hangar's settings" >&2
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    else
      stamp "$pid" "$dropin"
    fi
  fi
fi

if ! port_open 1883; then
  echo "services: starting mosquitto" >&2
  if [ "$(id -u)" = 0 ]; then
    # What the packaged service makes before it starts (its pid file and log live there).
    for d in /run/mosquitto /var/log/mosquitto; do
      mkdir -p -m 740 "$d" && chown mosquitto: "$d" 2>/dev/null || true
    done
  fi
  mosquitto -d -c "$MOSQUITTO_CONF"
  wait_port 1883 mosquitto
  if [ -n "${dropin:-}" ] && pid=$(mosquitto_pid); then stamp "$pid" "$dropin"; fi
fi
