#!/usr/bin/env bash
# Starts the local topology, or the named parts of it: up.sh [mariadb|zookeeper|cassandra|nats]...
# Idempotent: a service already answering is left alone. Each service logs to its own file
# under $MUSIC_DATA/<service>/. Run install.sh first (make up does).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# Parallel callers (test packages starting what is missing) take turns.
mkdir -p "$MUSIC_DATA"
exec 9>"$MUSIC_DATA/.up.lock"
flock -w "$MUSIC_START_TIMEOUT" 9 || die "another deploy/local/up.sh holds $MUSIC_DATA/.up.lock"

start_mariadb_site() {
  local site=$1 idx port dir
  idx=$(site_index "$site"); port=$(site_port "$site"); dir="$MUSIC_DATA/mariadb-$site"
  if port_open "$port"; then log "mariadb site $site already answers on 127.0.0.1:$port"; return; fi
  local t0=$SECONDS
  "$(dirname "${BASH_SOURCE[0]}")/mariadb-instance.sh" "$dir" "$port" "$idx"
  log "mariadb site $site ready on 127.0.0.1:$port (server_id=$idx gtid_domain_id=$idx) in $((SECONDS - t0))s"
}

start_zookeeper() {
  local dir="$MUSIC_DATA/zookeeper" port=$MUSIC_ZK_PORT
  if port_open "$port"; then log "zookeeper already answers on 127.0.0.1:$port"; return; fi
  mkdir -p "$dir/data"
  cat >"$dir/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
maxClientCnxns=0
4lw.commands.whitelist=ruok,srvr,mntr
CFG
  local t0=$SECONDS
  setsid java -Xmx256m -cp "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar" \
    -Dzookeeper.jmx.log4j.disable=true \
    org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" </dev/null >"$dir/zookeeper.log" 2>&1 9>&- &
  echo $! >"$dir/server.pid"
  wait_port zookeeper "$port" "$dir/server.pid" "$dir/zookeeper.log"
  log "zookeeper ready on 127.0.0.1:$port in $((SECONDS - t0))s"
}

start_cassandra() {
  local dir="$MUSIC_DATA/cassandra" port=$MUSIC_CASSANDRA_PORT
  local lib="$MUSIC_CACHE/cassandra-$MUSIC_CASSANDRA_VERSION/lib" conf="$MUSIC_REPO/deploy/local/cassandra"
  if port_open "$port"; then log "cassandra already answers on 127.0.0.1:$port"; return; fi
  ls "$lib"/cassandra-all-*.jar >/dev/null 2>&1 || die "Cassandra jars missing in $lib; run deploy/local/install.sh"
  mkdir -p "$dir"
  sed -e "s|@DIR@|$dir|g" -e "s|@NATIVE_PORT@|$port|g" -e "s|@STORAGE_PORT@|$MUSIC_CASSANDRA_STORAGE_PORT|g" \
    "$conf/cassandra.yaml.in" >"$dir/cassandra.yaml"
  local opts; opts=$(grep -v '^\s*#' "$conf/jvm.options" | grep -v '^\s*$' | tr '\n' ' ')
  local t0=$SECONDS
  # shellcheck disable=SC2086
  setsid java -Xms"$MUSIC_CASSANDRA_HEAP" -Xmx"$MUSIC_CASSANDRA_HEAP" $opts \
    -javaagent:"$(ls "$lib"/jamm-*.jar | head -1)" \
    -Dcassandra.config="file://$dir/cassandra.yaml" -Dcassandra.storagedir="$dir" \
    -Dcassandra.logdir="$dir" -Dlogback.configurationFile="$conf/logback.xml" \
    -cp "$lib/*" org.apache.cassandra.service.CassandraDaemon </dev/null >"$dir/cassandra.log" 2>&1 9>&- &
  echo $! >"$dir/server.pid"
  wait_port cassandra "$port" "$dir/server.pid" "$dir/cassandra.log"
  log "cassandra ready on 127.0.0.1:$port in $((SECONDS - t0))s"
}

start_nats() {
  local dir="$MUSIC_DATA/nats" port=$MUSIC_NATS_PORT bin="$MUSIC_REPO/bin/music"
  if port_open "$port"; then log "nats already answers on 127.0.0.1:$port"; return; fi
  [ -x "$bin" ] || die "$bin missing; run deploy/local/install.sh"
  mkdir -p "$dir"
  local t0=$SECONDS
  setsid "$bin" nats --addr "127.0.0.1:$port" --store "$dir/jetstream" --log-file "$dir/nats.log" \
    </dev/null >>"$dir/nats.log" 2>&1 9>&- &
  echo $! >"$dir/server.pid"
  wait_port nats "$port" "$dir/server.pid" "$dir/nats.log"
  log "nats (JetStream) ready on 127.0.0.1:$port in $((SECONDS - t0))s"
}

services=("$@")
((${#services[@]})) || services=(mariadb zookeeper nats cassandra)
for svc in "${services[@]}"; do
  case $svc in
    mariadb) for s in $MUSIC_SITES; do start_mariadb_site "$s"; done ;;
    zookeeper) start_zookeeper ;;
    cassandra) start_cassandra ;;
    nats) start_nats ;;
    *) die "unknown service '$svc' (mariadb, zookeeper, cassandra, nats)" ;;
  esac
done
