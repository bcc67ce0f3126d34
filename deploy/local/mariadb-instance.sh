#!/usr/bin/env bash
# mariadb-instance.sh DIR PORT INDEX: initialises (if needed) and starts one MariaDB site
# in DIR on 127.0.0.1:PORT with server_id = gtid_domain_id = INDEX, with the settings every
# MUSIC site needs (ROW binlog with FULL image and metadata, GTIDs, 64 MiB packets), and
# waits until it answers. up.sh starts the topology's sites with it; tests start private
# sites with it (internal/testenv.NewPrivateMariaDB). AUTO_INCREMENT ids never collide
# between sites: every site steps by auto_increment_increment =
# MUSIC_AUTO_INCREMENT_INCREMENT (default 16, an upper bound on the number of sites) from
# auto_increment_offset = its index (1..16).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
dir=$1 port=$2 idx=$3
ai_inc=${MUSIC_AUTO_INCREMENT_INCREMENT:-16}
ai_off=$(( (idx - 1) % ai_inc + 1 ))
mkdir -p "$dir"
if [ ! -d "$dir/data/mysql" ]; then
  # Concurrent installs collide on temporary files: one at a time on this machine.
  flock /tmp/music-mariadb-install.lock mariadb-install-db --no-defaults --datadir="$dir/data" --user=root \
    --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 \
    || die "mariadb-install-db in $dir failed; see $dir/install.log"
fi
setsid mariadbd --no-defaults --user=root --datadir="$dir/data" --socket="$dir/mysqld.sock" \
  --pid-file="$dir/mysqld.pid" --port="$port" --bind-address=127.0.0.1 \
  --server-id="$idx" --gtid-domain-id="$idx" --log-bin="$dir/data/mariadb-bin" \
  --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
  --log-slave-updates=ON --gtid-strict-mode=OFF \
  --auto-increment-increment="$ai_inc" --auto-increment-offset="$ai_off" \
  --rpl-semi-sync-master-enabled=OFF --rpl-semi-sync-slave-enabled=OFF \
  --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
  --max-connections=500 --max-allowed-packet=64M \
  --innodb-buffer-pool-size=${MUSIC_MARIADB_BUFFER_POOL:-256M} --innodb-flush-log-at-trx-commit=1 --sync-binlog=1 \
  --log-error="$dir/error.log" </dev/null >"$dir/stdout.log" 2>&1 9>&- &
echo $! >"$dir/server.pid"
wait_port "mariadb in $dir" "$port" "$dir/server.pid" "$dir/error.log"
