#!/usr/bin/env bash
# Stops the local topology, or the named parts of it: down.sh [mariadb|zookeeper|cassandra|nats]...
# Data stays in $MUSIC_DATA; `make clean` removes it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

stop_pidfile() {
  local name=$1 pidfile=$2 pid i
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then log "$name did not stop in 30s; killing"; kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
  log "$name stopped"
}

services=("$@")
((${#services[@]})) || services=(agents nats cassandra zookeeper mariadb)
for svc in "${services[@]}"; do
  case $svc in
    agents)
      for d in "$MUSIC_DATA"/agent-*; do
        [ -d "$d" ] || continue
        for k in gateway capture apply; do stop_pidfile "$k agent ${d##*/agent-}" "$d/$k.pid"; done
      done ;;
    mariadb) for s in $MUSIC_SITES; do stop_pidfile "mariadb site $s" "$MUSIC_DATA/mariadb-$s/server.pid"; done ;;
    zookeeper|cassandra|nats) stop_pidfile "$svc" "$MUSIC_DATA/$svc/server.pid" ;;
    *) die "unknown service '$svc' (agents, mariadb, zookeeper, cassandra, nats)" ;;
  esac
done
