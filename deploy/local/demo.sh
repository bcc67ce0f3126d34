#!/usr/bin/env bash
# The main job on the local topology: starts a capture and an apply agent per site, creates
# a table at site a, writes at every site (same-key conflicts included), and shows that all
# sites and the MUSIC store (Cassandra) converge to identical rows, with lag. Leaves the
# topology and agents running. Idempotent: a re-run starts over with a fresh table.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bin="$MUSIC_REPO/bin/music"
DB="${MUSIC_DEMO_DB:-musicdemo}"
nats="nats://127.0.0.1:$MUSIC_NATS_PORT"
read -r -a sites <<<"$MUSIC_SITES"
((${#sites[@]} >= 2)) || die "the demo needs at least two sites (MUSIC_SITES='$MUSIC_SITES')"

sql() { mariadb --no-defaults -h127.0.0.1 -P"$(site_port "$1")" -uroot -N -B -e "$2"; }
others() { local s o=(); for s in "${sites[@]}"; do [ "$s" = "$1" ] || o+=("$s"); done; (IFS=,; echo "${o[*]}"); }

start_agent() { # site kind args...
  local site=$1 kind=$2; shift 2
  local dir="$MUSIC_DATA/agent-$site"
  mkdir -p "$dir"
  if pid_alive "$dir/$kind.pid"; then return; fi
  setsid "$bin" "$kind" "$@" </dev/null >>"$dir/$kind.log" 2>&1 &
  echo $! >"$dir/$kind.pid"
}

wait_http() { # url what
  local t0=$SECONDS
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    ((SECONDS - t0 < 60)) || die "$2 not healthy at $1 within 60s; see $MUSIC_DATA/agent-*/"
    sleep 0.3
  done
}

log "starting a capture and an apply agent per site (agents of an earlier run are restarted, on the binary just built)"
"$(dirname "${BASH_SOURCE[0]}")/down.sh" agents >/dev/null
for s in "${sites[@]}"; do
  i=$(site_index "$s")
  start_agent "$s" capture --site "$s" --domain-id "$i" --dsn "$(site_dsn "$s")" --nats-url "$nats" --include "$DB.*,music_sync.*" \
    --metrics-addr "127.0.0.1:$((MUSIC_CAPTURE_PORT_BASE + i))"
  start_agent "$s" apply --site "$s" --origins "$(others "$s")" --nats-url "$nats" \
    --mariadb-dsn "$(site_dsn "$s")" --cassandra-hosts "127.0.0.1:$MUSIC_CASSANDRA_PORT" --sync-tables "$DB.bank" \
    --metrics-addr "127.0.0.1:$((MUSIC_APPLY_PORT_BASE + i))"
done
for s in "${sites[@]}"; do
  i=$(site_index "$s")
  wait_http "http://127.0.0.1:$((MUSIC_CAPTURE_PORT_BASE + i))/healthz" "capture $s"
  wait_http "http://127.0.0.1:$((MUSIC_APPLY_PORT_BASE + i))/healthz" "apply $s"
done

log "creating database $DB at every site and table $DB.accounts at site ${sites[0]}"
# Database-level DDL is not mirrored; table DDL is, in order, so a re-run's DROP at site a
# reaches the other sites before the CREATE that follows it.
for s in "${sites[@]}"; do sql "$s" "CREATE DATABASE IF NOT EXISTS $DB"; done
sql "${sites[0]}" "DROP TABLE IF EXISTS $DB.accounts"
sql "${sites[0]}" "CREATE TABLE $DB.accounts (id INT PRIMARY KEY, owner VARCHAR(40) NOT NULL,
  balance DECIMAL(14,2) NOT NULL, touched_by CHAR(8), updated DATETIME(6) NOT NULL)"
for s in "${sites[@]:1}"; do
  t0=$SECONDS
  until [ "$(sql "$s" "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='$DB' AND table_name='accounts'")" = 1 ]; do
    ((SECONDS - t0 < 60)) || die "table $DB.accounts did not reach site $s within 60s; see $MUSIC_DATA/agent-$s/apply.log"
    sleep 0.2
  done
done
log "the table reached every site"

log "writing at every site: 200 own rows each, plus concurrent updates of 10 shared rows"
sql "${sites[0]}" "INSERT INTO $DB.accounts VALUES $(for k in $(seq 1 10); do printf "(%d,'shared-%d',100.00,'%s',NOW(6))," "$k" "$k" "${sites[0]}"; done | sed 's/,$//')"
sleep 1
writers=()
for s in "${sites[@]}"; do
  (
    i=$(site_index "$s")
    for batch in $(seq 0 9); do
      values=$(for k in $(seq 1 20); do id=$((i * 1000 + batch * 20 + k)); printf "(%d,'%s-%d',%d.%02d,'%s',NOW(6))," "$id" "$s" "$id" "$id" "$((id % 100))" "$s"; done | sed 's/,$//')
      sql "$s" "INSERT INTO $DB.accounts VALUES $values"
      sql "$s" "UPDATE $DB.accounts SET balance = balance + $i, touched_by = '$s', updated = NOW(6) WHERE id = $((batch + 1))"
    done
    sql "$s" "DELETE FROM $DB.accounts WHERE id = $((i * 1000 + 1))"
  ) &
  writers+=($!)
done
wait "${writers[@]}" # not a bare wait: the agents are children of this shell too

log "waiting for every site and the MUSIC store to converge"
verify=("$bin" verify --db "$DB" --table accounts --cassandra-hosts "127.0.0.1:$MUSIC_CASSANDRA_PORT")
for s in "${sites[@]}"; do verify+=(--site "$s=$(site_dsn "$s")"); done
t0=$SECONDS
until "${verify[@]}" >/dev/null 2>&1; do
  if ((SECONDS - t0 > 120)); then
    "${verify[@]}" || true
    die "sites did not converge within 120s; look at $MUSIC_DATA/agent-*/apply.log and 'bin/music status'"
  fi
  sleep 1
done
log "converged in $((SECONDS - t0))s after the writes stopped"
"${verify[@]}"
echo

log "sync table $DB.bank: a gateway per site, the same transfers at every site through it"
sql "${sites[0]}" "DROP TABLE IF EXISTS $DB.bank"
sql "${sites[0]}" "CREATE TABLE $DB.bank (id INT PRIMARY KEY, balance INT NOT NULL)"
for s in "${sites[@]}"; do
  i=$(site_index "$s")
  start_agent "$s" gateway --site "$s" --listen "127.0.0.1:$((MUSIC_GATEWAY_PORT_BASE + i))" --backend "127.0.0.1:$(site_port "$s")" \
    --mariadb-dsn "$(site_dsn "$s")" --sync-tables "$DB.bank" --zookeeper "127.0.0.1:$MUSIC_ZK_PORT" \
    --cassandra-hosts "127.0.0.1:$MUSIC_CASSANDRA_PORT" --nats-url "$nats" \
    --metrics-addr "127.0.0.1:$((MUSIC_GATEWAY_STATUS_PORT_BASE + i))"
done
for s in "${sites[@]}"; do
  wait_http "http://127.0.0.1:$((MUSIC_GATEWAY_STATUS_PORT_BASE + $(site_index "$s")))/healthz" "gateway $s"
done
gw() { mariadb --no-defaults -h127.0.0.1 -P"$((MUSIC_GATEWAY_PORT_BASE + $(site_index "$1")))" -uroot -N -B "$DB" -e "$2"; }
gw "${sites[0]}" "INSERT INTO bank VALUES $(for k in $(seq 1 10); do printf "(%d,1000)," "$k"; done | sed 's/,$//')"
writers=()
for s in "${sites[@]}"; do
  (
    ok=0
    for n in $(seq 1 25); do
      from=$((RANDOM % 10 + 1)); to=$((RANDOM % 10 + 1)); amount=$((RANDOM % 50 + 1))
      [ "$from" = "$to" ] && continue
      if gw "$s" "START TRANSACTION; SELECT balance FROM bank WHERE id IN ($from, $to) FOR UPDATE;
          UPDATE bank SET balance = balance - $amount WHERE id = $from; UPDATE bank SET balance = balance + $amount WHERE id = $to;
          COMMIT" >/dev/null 2>>"$MUSIC_DATA/agent-$s/demo-transfers.err"; then ok=$((ok + 1)); fi
    done
    echo "site $s: $ok transfers committed through its gateway"
  ) &
  writers+=($!)
done
wait "${writers[@]}"
log "waiting for every site and the MUSIC store to converge"
verifybank=("$bin" verify --db "$DB" --table bank --cassandra-hosts "127.0.0.1:$MUSIC_CASSANDRA_PORT")
for s in "${sites[@]}"; do verifybank+=(--site "$s=$(site_dsn "$s")"); done
t0=$SECONDS
until "${verifybank[@]}" >/dev/null 2>&1; do
  if ((SECONDS - t0 > 120)); then
    "${verifybank[@]}" || true
    die "sites did not converge within 120s; look at $MUSIC_DATA/agent-*/apply.log and 'bin/music status'"
  fi
  sleep 1
done
log "converged in $((SECONDS - t0))s after the writes stopped"
"${verifybank[@]}"
echo
for s in "${sites[@]}"; do
  log "site $s: total of $DB.bank is $(sql "$s" "SELECT SUM(balance) FROM $DB.bank") (10 accounts of 1000: it must stay 10000)"
done
gateways=$(for s in "${sites[@]}"; do printf "127.0.0.1:%d," "$((MUSIC_GATEWAY_STATUS_PORT_BASE + $(site_index "$s")))"; done | sed 's/,$//')
agents=$(for s in "${sites[@]}"; do printf "127.0.0.1:%d," "$((MUSIC_APPLY_PORT_BASE + $(site_index "$s")))"; done | sed 's/,$//')
captures=$(for s in "${sites[@]}"; do printf "127.0.0.1:%d," "$((MUSIC_CAPTURE_PORT_BASE + $(site_index "$s")))"; done | sed 's/,$//')
sleep 2.5 # the agents refresh their pending counts every 2 s
"$bin" status --captures "$captures" --agents "$agents" --gateways "$gateways" --nats-url "$nats" || true

cat <<MSG

The topology and the agents keep running. Look around:
  make status                                   services and where they listen
  bin/music status --captures $captures --agents $agents --nats-url $nats
  mariadb --no-defaults -h127.0.0.1 -P$(site_port "${sites[1]}") -uroot $DB   write at site ${sites[1]}, watch it reach the others
  mariadb --no-defaults -h127.0.0.1 -P$((MUSIC_GATEWAY_PORT_BASE + 2)) -uroot $DB   site ${sites[1]}'s gateway: the sync table bank moves here
  $(printf "%q " "${verify[@]}")
  curl -s 127.0.0.1:$((MUSIC_CAPTURE_PORT_BASE + 1))/metrics | grep music_capture   capture metrics of site ${sites[0]}
  logs: $MUSIC_DATA/agent-<site>/{capture,apply,gateway}.log
Stop everything with: make down
MSG
