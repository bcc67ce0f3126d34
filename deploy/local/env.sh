# Settings of the local topology. Sourced by every script in deploy/local; each value can be
# overridden from the environment. Defaults keep clear of a MariaDB on 3306 and a Cassandra
# on 9042 belonging to another project.
_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MUSIC_REPO="${MUSIC_REPO:-$(cd "$_here/../.." && pwd)}"
MUSIC_DATA="${MUSIC_DATA:-$MUSIC_REPO/.local}"          # data, logs, pid files (git-ignored)
MUSIC_CACHE="${MUSIC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/music}"  # downloaded jars, built binary
MUSIC_SITES="${MUSIC_SITES:-a b c}"                      # one MariaDB per site
MUSIC_MARIADB_PORT_BASE="${MUSIC_MARIADB_PORT_BASE:-23306}" # site i listens on base+i (a=23306)
MUSIC_NATS_PORT="${MUSIC_NATS_PORT:-24222}"
MUSIC_ZK_PORT="${MUSIC_ZK_PORT:-22181}"
MUSIC_CASSANDRA_PORT="${MUSIC_CASSANDRA_PORT:-29042}"
MUSIC_CASSANDRA_STORAGE_PORT="${MUSIC_CASSANDRA_STORAGE_PORT:-27000}"
MUSIC_CASSANDRA_VERSION="${MUSIC_CASSANDRA_VERSION:-5.0.8}"
MUSIC_CASSANDRA_HEAP="${MUSIC_CASSANDRA_HEAP:-1G}"
MUSIC_START_TIMEOUT="${MUSIC_START_TIMEOUT:-180}"        # seconds to wait for a service to answer
export MUSIC_REPO MUSIC_DATA MUSIC_CACHE MUSIC_SITES MUSIC_MARIADB_PORT_BASE MUSIC_NATS_PORT \
  MUSIC_ZK_PORT MUSIC_CASSANDRA_PORT MUSIC_CASSANDRA_STORAGE_PORT MUSIC_CASSANDRA_VERSION \
  MUSIC_CASSANDRA_HEAP MUSIC_START_TIMEOUT

# site_index NAME prints the 1-based position of a site in MUSIC_SITES (its server_id and
# gtid_domain_id).
site_index() {
  local i=1 s
  for s in $MUSIC_SITES; do
    [ "$s" = "$1" ] && { echo "$i"; return 0; }
    i=$((i + 1))
  done
  echo "unknown site '$1' (MUSIC_SITES='$MUSIC_SITES')" >&2
  return 1
}
site_port() { echo $((MUSIC_MARIADB_PORT_BASE + $(site_index "$1") - 1)); }

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive FILE: true when FILE names a running process.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_port NAME PORT PIDFILE LOG: wait until PORT answers; fail naming the log if the
# process dies or MUSIC_START_TIMEOUT passes.
wait_port() {
  local name=$1 port=$2 pidfile=$3 logf=$4 t0=$SECONDS
  while ! port_open "$port"; do
    if ! pid_alive "$pidfile"; then
      tail -n 20 "$logf" >&2 2>/dev/null
      die "$name exited during start-up; see $logf"
    fi
    if (( SECONDS - t0 > MUSIC_START_TIMEOUT )); then
      die "$name did not answer on port $port within ${MUSIC_START_TIMEOUT}s; see $logf"
    fi
    sleep 0.2
  done
}

# The demo's agents: site i serves capture metrics on CAPTURE_BASE+i and apply
# metrics/status on APPLY_BASE+i.
MUSIC_CAPTURE_PORT_BASE="${MUSIC_CAPTURE_PORT_BASE:-25100}"
MUSIC_APPLY_PORT_BASE="${MUSIC_APPLY_PORT_BASE:-25200}"
# The demo's gateways: site i accepts MySQL clients on GATEWAY_BASE+i and serves its
# metrics/status on GATEWAY_STATUS_BASE+i.
MUSIC_GATEWAY_PORT_BASE="${MUSIC_GATEWAY_PORT_BASE:-25300}"
MUSIC_GATEWAY_STATUS_PORT_BASE="${MUSIC_GATEWAY_STATUS_PORT_BASE:-25400}"
export MUSIC_CAPTURE_PORT_BASE MUSIC_APPLY_PORT_BASE MUSIC_GATEWAY_PORT_BASE MUSIC_GATEWAY_STATUS_PORT_BASE
site_dsn() { echo "root@tcp(127.0.0.1:$(site_port "$1"))/"; }
