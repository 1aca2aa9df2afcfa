#!/usr/bin/env bash
# Starts whichever of PostgreSQL, NATS (JetStream) and Mosquitto is not answering on loopback, with
# the same commands the development machines use. Safe to run any number of times.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 50); do port_open "$1" && return 0; sleep 0.2; done
  echo "services: nothing answers on port $1 ($2)" >&2
  return 1
}

if ! port_open 5432; then
  echo "services: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  wait_port 5432 postgresql
fi

if ! port_open 4222; then
  echo "services: starting nats-server with JetStream" >&2
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port 4222 nats-server
fi

if ! port_open 1883; then
  echo "services: starting mosquitto" >&2
  mosquitto -d -c /etc/mosquitto/mosquitto.conf
  wait_port 1883 mosquitto
fi
