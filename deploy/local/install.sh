#!/usr/bin/env bash
# Installs what the local topology needs and is missing: MariaDB and ZooKeeper from Debian's
# packages, Cassandra's jars from Maven Central (into $MUSIC_CACHE), and the music binary.
# Idempotent: a second run only checks.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# Concurrent callers (make, test processes) take turns.
mkdir -p "$MUSIC_DATA"
exec 8>"$MUSIC_DATA/.install.lock"
flock -w 900 8 || die "another deploy/local/install.sh holds $MUSIC_DATA/.install.lock"

need_apt=()
command -v mariadbd >/dev/null || need_apt+=(mariadb-server)
[ -f /usr/share/java/zookeeper.jar ] || need_apt+=(zookeeper)
[ -f /usr/share/java/slf4j-simple.jar ] || need_apt+=(libslf4j-java)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v javac >/dev/null || need_apt+=(openjdk-17-jdk-headless) # the Camunda and JDBC tests build Java
command -v mvn >/dev/null || need_apt+=(maven)
command -v flock >/dev/null || need_apt+=(util-linux)
command -v curl >/dev/null || need_apt+=(curl)
if ((${#need_apt[@]})); then
  log "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

lib="$MUSIC_CACHE/cassandra-$MUSIC_CASSANDRA_VERSION/lib"
if ! ls "$lib"/cassandra-all-*.jar >/dev/null 2>&1; then
  log "fetching Cassandra $MUSIC_CASSANDRA_VERSION jars from Maven Central into $lib"
  mkdir -p "$lib"
  mvn -q -B -f "$MUSIC_REPO/deploy/local/cassandra/pom.xml" \
    -Dcassandra.version="$MUSIC_CASSANDRA_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$lib"
fi

log "building the music binary"
mkdir -p "$MUSIC_REPO/bin"
(cd "$MUSIC_REPO" && go build -o bin/music ./cmd/music)
