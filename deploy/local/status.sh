#!/usr/bin/env bash
# Prints each service of the local topology, its address, and whether it answers.
# Exit status 0 when all answer, 1 otherwise.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

bad=0
row() { # name address port logfile
  local state="down"
  if port_open "$3"; then state="up"; else bad=1; fi
  printf '%-16s %-22s %-5s %s\n' "$1" "$2" "$state" "$4"
}
printf '%-16s %-22s %-5s %s\n' SERVICE ADDRESS STATE LOG
for s in $MUSIC_SITES; do
  p=$(site_port "$s")
  row "mariadb-$s" "127.0.0.1:$p" "$p" "$MUSIC_DATA/mariadb-$s/error.log"
done
row zookeeper "127.0.0.1:$MUSIC_ZK_PORT" "$MUSIC_ZK_PORT" "$MUSIC_DATA/zookeeper/zookeeper.log"
row nats "nats://127.0.0.1:$MUSIC_NATS_PORT" "$MUSIC_NATS_PORT" "$MUSIC_DATA/nats/nats.log"
row cassandra "127.0.0.1:$MUSIC_CASSANDRA_PORT" "$MUSIC_CASSANDRA_PORT" "$MUSIC_DATA/cassandra/cassandra.log"
exit $bad
