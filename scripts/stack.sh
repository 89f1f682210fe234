#!/usr/bin/env bash
# The local stack: PostgreSQL, RabbitMQ (management + prometheus plugins) and Redis from
# Debian packages, without systemd and without Docker.
#
#   scripts/stack.sh start [SERVER]
#                             install what is missing, start what is not running, wait
#   scripts/stack.sh stop [SERVER] [--crash]
#                             SERVER is postgres, rabbitmq or redis (all when omitted);
#                             --crash stops without a clean shutdown (PostgreSQL's
#                             immediate mode, SIGKILL for the others), as a power cut would
#   scripts/stack.sh status
#   scripts/stack.sh env      print the connection settings as DTKS_* variables
#   scripts/stack.sh reset    empty the `dtks` database, the `dtks.*` queues and the
#                             `dtks:*` cache keys (the main job starts from here)
#   scripts/stack.sh sweep    drop the databases of end-to-end runs whose process is
#                             gone (killed, or died before its own clean-up); those of
#                             runs still going are kept (scripts/test.sh runs it first)
#
# End-to-end runs remove their database, queues and exchanges when they end, and their
# queues expire on their own after ten idle minutes: hundreds of leftover quorum queues
# make RabbitMQ's AMQP listener stop answering shortly after a restart.
#
# Idempotent: running `start` twice leaves one of each server. State lives in
# $DTKS_STACK_DIR (default /var/tmp/dtks-stack). A second stack beside the first (the
# fault suite restarts servers of its own) sets DTKS_STACK_DIR, DTKS_PG_PORT,
# DTKS_AMQP_PORT, DTKS_REDIS_PORT, DTKS_RABBIT_NODE, DTKS_RABBIT_MGMT_PORT,
# DTKS_RABBIT_PROM_PORT and DTKS_RABBIT_DIST_PORT. DTKS_PG_SYNCHRONOUS_COMMIT (default
# off, for speed) is applied when the cluster is first made.
set -euo pipefail

STACK_DIR=${DTKS_STACK_DIR:-/var/tmp/dtks-stack}
PG_PORT=${DTKS_PG_PORT:-5432}
REDIS_PORT=${DTKS_REDIS_PORT:-6379}
AMQP_PORT=${DTKS_AMQP_PORT:-5672}
RABBIT_NODE=${DTKS_RABBIT_NODE:-dtks@localhost}
RABBIT_MGMT_PORT=${DTKS_RABBIT_MGMT_PORT:-15672}
RABBIT_PROM_PORT=${DTKS_RABBIT_PROM_PORT:-15692}
RABBIT_DIST_PORT=${DTKS_RABBIT_DIST_PORT:-$((AMQP_PORT + 20000))}
PG_SYNCHRONOUS_COMMIT=${DTKS_PG_SYNCHRONOUS_COMMIT:-off}
PG_USER=dtks
PG_PASSWORD=dtks
PG_DB=dtks

log() { printf '[stack] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && echo "$dir"
}

install_missing() {
  local pkgs=()
  [ -n "$(pg_bin)" ] || pkgs+=(postgresql postgresql-contrib)
  command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ] || pkgs+=(rabbitmq-server)
  command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
  command -v runuser >/dev/null 2>&1 || pkgs+=(util-linux)
  # The TLS tests mint their certificates with it.
  command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
  [ ${#pkgs[@]} -eq 0 ] && return 0
  log "installing ${pkgs[*]}"
  # No init system here: keep the packages' own scripts from starting services.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    created=1
  fi
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  [ "$created" -eq 1 ] && as_root rm -f "$policy"
  return 0
}

pg_ready() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

start_postgres() {
  local bin data=$STACK_DIR/postgres
  bin=$(pg_bin)
  if pg_ready; then log "postgres already running on $PG_PORT"; return 0; fi
  as_root mkdir -p "$data"
  as_root chown -R postgres:postgres "$data"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising postgres cluster in $data"
    as_root runuser -u postgres -- "$bin/initdb" -D "$data" -A trust -U postgres >/dev/null
    cat <<CONF | as_root tee -a "$data/postgresql.conf" >/dev/null
listen_addresses = '127.0.0.1'
port = $PG_PORT
max_connections = 300
shared_buffers = 512MB
fsync = on
synchronous_commit = $PG_SYNCHRONOUS_COMMIT
unix_socket_directories = '$data'
CONF
  fi
  as_root runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null
  log "postgres started on $PG_PORT"
  local psql=("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt)
  if [ "$("${psql[@]}" -c "select 1 from pg_roles where rolname='$PG_USER'")" != 1 ]; then
    "${psql[@]}" -c "create role $PG_USER login superuser password '$PG_PASSWORD'"
  fi
  if [ "$("${psql[@]}" -c "select 1 from pg_database where datname='$PG_DB'")" != 1 ]; then
    "${psql[@]}" -c "create database $PG_DB owner $PG_USER"
  fi
}

redis_ready() { redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; }

start_redis() {
  if redis_ready; then log "redis already running on $REDIS_PORT"; return 0; fi
  mkdir -p "$STACK_DIR/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --dir "$STACK_DIR/redis" \
    --logfile "$STACK_DIR/redis/redis.log" --pidfile "$STACK_DIR/redis/redis.pid" --save '' >/dev/null
  for _ in $(seq 1 50); do redis_ready && break; sleep 0.1; done
  redis_ready || { log "redis did not start"; exit 1; }
  log "redis started on $REDIS_PORT"
}

rabbit_env() {
  export RABBITMQ_MNESIA_BASE=$STACK_DIR/rabbitmq/mnesia
  export RABBITMQ_LOG_BASE=$STACK_DIR/rabbitmq/log
  export RABBITMQ_PID_FILE=$STACK_DIR/rabbitmq/rabbitmq.pid
  export RABBITMQ_NODE_PORT=$AMQP_PORT
  export RABBITMQ_NODENAME=$RABBIT_NODE
  export RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT
  export RABBITMQ_ENABLED_PLUGINS_FILE=$STACK_DIR/rabbitmq/enabled_plugins
  export RABBITMQ_CONFIG_FILE=$STACK_DIR/rabbitmq/rabbitmq.conf
  export HOME=$STACK_DIR/rabbitmq
}

# Ready means what clients need: the AMQP listener answers a protocol header with
# connection.start (frame type 1). `rabbitmqctl status` is not enough — a broker can be
# up for rabbitmqctl's purposes while its AMQP listener accepts and never answers.
rabbit_answers() {
  timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$AMQP_PORT && printf 'AMQP\\x00\\x00\\x09\\x01' >&3 && head -c 1 <&3" 2>/dev/null \
    | od -An -tx1 | grep -q 01
}
rabbit_beam() { [ -s "$STACK_DIR/rabbitmq/rabbitmq.pid" ] && kill -0 "$(cat "$STACK_DIR/rabbitmq/rabbitmq.pid")" 2>/dev/null; }

start_rabbitmq() {
  rabbit_env
  mkdir -p "$STACK_DIR/rabbitmq/log" "$STACK_DIR/rabbitmq/mnesia"
  printf 'management.tcp.port = %s\nprometheus.tcp.port = %s\n' "$RABBIT_MGMT_PORT" "$RABBIT_PROM_PORT" \
    >"$RABBITMQ_CONFIG_FILE"
  chown -R rabbitmq:rabbitmq "$STACK_DIR/rabbitmq" 2>/dev/null || true
  if rabbit_answers; then log "rabbitmq already running on $AMQP_PORT"; return 0; fi
  rabbitmq-plugins -q --offline enable rabbitmq_management rabbitmq_prometheus >/dev/null
  chown -R rabbitmq:rabbitmq "$STACK_DIR/rabbitmq" 2>/dev/null || true
  local attempt
  for attempt in 1 2 3; do
    # A broker that runs but does not answer is of no use: stop it and start afresh.
    if rabbit_beam; then
      log "rabbitmq is running but its AMQP listener does not answer; restarting it"
      kill -9 "$(cat "$RABBITMQ_PID_FILE")" 2>/dev/null || true
      sleep 1
    fi
    rm -f "$RABBITMQ_PID_FILE"
    rabbitmq-server -detached >/dev/null 2>&1 </dev/null
    # `await_startup` straight after start fails: wait on the pid file instead.
    for _ in $(seq 1 100); do [ -s "$RABBITMQ_PID_FILE" ] && break; sleep 0.2; done
    timeout 150 rabbitmqctl -q -n "$RABBIT_NODE" wait --timeout 120 "$RABBITMQ_PID_FILE" >/dev/null 2>&1 </dev/null || true
    for _ in $(seq 1 30); do
      if rabbit_answers; then
        log "rabbitmq started on $AMQP_PORT (management on $RABBIT_MGMT_PORT)"
        return 0
      fi
      sleep 1
    done
    log "rabbitmq attempt $attempt: no AMQP answer on $AMQP_PORT"
  done
  log "rabbitmq did not start; see $STACK_DIR/rabbitmq/log"
  exit 1
}

stop_postgres() {
  local bin mode=fast
  bin=$(pg_bin)
  [ "${CRASH:-0}" -eq 1 ] && mode=immediate
  if [ -n "$bin" ] && [ -f "$STACK_DIR/postgres/PG_VERSION" ] && pg_ready; then
    as_root runuser -u postgres -- "$bin/pg_ctl" -D "$STACK_DIR/postgres" -m "$mode" -w stop >/dev/null && log "postgres stopped ($mode)"
  fi
}

stop_redis() {
  if ! redis_ready; then return 0; fi
  if [ "${CRASH:-0}" -eq 1 ] && [ -s "$STACK_DIR/redis/redis.pid" ]; then
    kill -9 "$(cat "$STACK_DIR/redis/redis.pid")" 2>/dev/null || true
  else
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  fi
  for _ in $(seq 1 50); do redis_ready || break; sleep 0.1; done
  log "redis stopped"
}

stop_rabbitmq() {
  rabbit_env
  if ! rabbit_beam; then return 0; fi
  local pid
  pid=$(cat "$RABBITMQ_PID_FILE")
  if [ "${CRASH:-0}" -eq 1 ]; then
    kill -9 "$pid" 2>/dev/null || true
  else
    timeout 60 rabbitmqctl -q -n "$RABBIT_NODE" stop >/dev/null 2>&1 </dev/null \
      || kill -9 "$pid" 2>/dev/null || true
  fi
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$RABBITMQ_PID_FILE"
  log "rabbitmq stopped"
}

status() {
  local rc=0
  if pg_ready; then echo "postgres: running on $PG_PORT"; else echo "postgres: stopped"; rc=1; fi
  if redis_ready; then echo "redis:    running on $REDIS_PORT"; else echo "redis:    stopped"; rc=1; fi
  rabbit_env
  if rabbit_answers; then echo "rabbitmq: running on $AMQP_PORT"
  elif rabbit_beam; then echo "rabbitmq: running but not answering on $AMQP_PORT"; rc=1
  else echo "rabbitmq: stopped"; rc=1; fi
  return $rc
}

print_env() {
  cat <<ENV
export DTKS_DATABASE__URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
export DTKS_BUS__URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f
export DTKS_REDIS__URL=redis://127.0.0.1:$REDIS_PORT/
ENV
}

reset() {
  local bin
  bin=$(pg_bin)
  local psql=("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt)
  "${psql[@]}" -c "drop database if exists $PG_DB with (force)"
  "${psql[@]}" -c "create database $PG_DB owner $PG_USER"
  rabbit_env
  local q
  for q in $(rabbitmqctl -q -n "$RABBIT_NODE" list_queues name --no-table-headers | grep '^dtks\.' || true); do
    rabbitmqctl -q -n "$RABBIT_NODE" delete_queue "$q" >/dev/null
  done
  redis-cli -p "$REDIS_PORT" --scan --pattern 'dtks:*' | xargs -r redis-cli -p "$REDIS_PORT" del >/dev/null
  log "reset: database $PG_DB recreated, dtks.* queues and dtks:* cache keys deleted"
}

# Whether the process that owns an end-to-end database still runs. The database is named
# dtks_e2e_<pid>_<start>_<run> (tests/src/ports.rs, run_database): it runs when
# /proc/<pid>/stat exists and names the same start time (so a pid taken over by another
# process does not keep a dead run's database). Names without a pid are of older runs.
run_alive() {
  local name=$1 pid start stat rest
  [[ $name =~ ^dtks_e2e_([0-9]+)_([0-9]+)_[0-9a-f]+$ ]] || return 1
  pid=${BASH_REMATCH[1]} start=${BASH_REMATCH[2]}
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  rest=${stat##*) }
  read -r -a fields <<<"$rest"
  [ "${fields[19]:-}" = "$start" ]
}

# Drops the databases of end-to-end runs whose process is gone (killed, or died before
# its own clean-up); the databases of runs still going are left alone.
sweep() {
  local bin db n=0 kept=0
  bin=$(pg_bin)
  local psql=("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt)
  for db in $("${psql[@]}" -d postgres -c "select datname from pg_database where datname like 'dtks\_e2e\_%'"); do
    if run_alive "$db"; then kept=$((kept + 1)); continue; fi
    "${psql[@]}" -d postgres -c "drop database if exists $db with (force)"
    n=$((n + 1))
  done
  log "sweep: $n end-to-end databases of finished runs dropped, $kept of running ones kept"
}

command=${1:-start}
server=${2:-all}
CRASH=0
for arg in "$@"; do [ "$arg" = --crash ] && CRASH=1; done
[ "$server" = --crash ] && server=all
case "$server" in all|postgres|rabbitmq|redis) ;; *) echo "unknown server $server: use postgres, rabbitmq or redis" >&2; exit 2 ;; esac
want() { [ "$server" = all ] || [ "$server" = "$1" ]; }

case "$command" in
  start)
    install_missing
    if want postgres; then start_postgres; fi
    if want redis; then start_redis; fi
    if want rabbitmq; then start_rabbitmq; fi
    ;;
  stop)
    if want postgres; then stop_postgres; fi
    if want redis; then stop_redis; fi
    if want rabbitmq; then stop_rabbitmq; fi
    ;;
  status) status ;;
  env) print_env ;;
  reset) reset ;;
  sweep) sweep ;;
  *) echo "usage: $0 start|stop [postgres|rabbitmq|redis] [--crash] | status|env|reset|sweep" >&2; exit 2 ;;
esac
