#!/usr/bin/env bash
# Prints each service of the local topology, its address, and whether it answers.
# Exit status 0 when all answer, 1 otherwise.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

bad=0
# answers SERVICE PORT: a protocol-level check where a cheap one exists, else TCP.
answers() {
  case $1 in
    mariadb-*) mariadb-admin --no-defaults -h127.0.0.1 -P"$2" -uroot --connect-timeout=2 ping >/dev/null 2>&1 ;;
    zookeeper) [ "$(exec 3<>"/dev/tcp/127.0.0.1/$2" && printf ruok >&3 && timeout 2 cat <&3)" = imok ] 2>/dev/null ;;
    *) port_open "$2" ;;
  esac
}
row() { # name address port logfile
  local state="down"
  if answers "$1" "$3"; then state="up"; else bad=1; fi
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
