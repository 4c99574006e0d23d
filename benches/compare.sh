#!/usr/bin/env bash
# Load benchmark: pgbench against PostgreSQL directly, through PgBouncer, and through tenantgate.
#
# Starts an ephemeral PostgreSQL (initdb/pg_ctl as the `postgres` OS user), loads the demo schema
# and `pgbench -i`, starts PgBouncer (transaction mode) and a release build of tenantgate
# (transaction mode, a fixed-tenant user, so every statement is inspected and every transaction
# runs under the tenant; the tenant is set by a prelude only when a server connection does not
# carry it yet, see docs/threat-model.md) with the same pool size, then runs pgbench against the three targets in
# alternating rounds (direct, PgBouncer, tenantgate, direct, ...) and prints median TPS,
# average / p50 / p99 latency (from pgbench --log) and the ratios. It also measures the RSS of
# both proxies holding 10,000 idle authenticated clients, the cost of tenant enforcement
# (fixed-tenant user vs a break-glass user, which is neither inspected nor injected), PostgreSQL's
# own CPU per transaction next to the proxy's, and optionally profiles tenantgate.
# The tenant group compares a tenant-scoped workload (RLS-filtered point selects on the demo
# schema's customers) through tenantgate with and without signed tenant context, and through
# PgBouncer with the application setting the tenant itself: `set_config(…, true)` in the same
# Query as the statement (pgbouncer_q), and as its own round trip in BEGIN … COMMIT
# (pgbouncer_txn).
#
# --fairness measures instead what one tenant flooding the pool does to another (issue 17).
#
#   benches/compare.sh                 # full matrix: -S and TPC-B x simple/extended/prepared x 1/16/64/256
#   benches/compare.sh --quick         # the key cells, shorter runs
#   benches/compare.sh --cells "select:simple:16 tpcb:extended:64" --rounds 5 --duration 30
#   benches/compare.sh --quick --profile   # also perf-record tenantgate under -S -c 16
#   benches/compare.sh --fairness      # a quiet tenant's latency alone and under a 64-client flood
#
# Needs root (it runs PostgreSQL and PgBouncer as `postgres` via setpriv), PostgreSQL 15+ server
# binaries, python3; installs `pgbouncer` with apt-get if missing. Everything lives in a temp
# directory that is removed on exit (--keep keeps it). Results: --out DIR (default
# target/bench-results/<date>): results.tsv, summary.md, report.md, the idle-client JSON, profiles.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/benches/tools"

QUICK=0
ROUNDS=""
DURATION=""
POOL=""
FAIRNESS=0
FLOOD=64
FLOOD_KINDS="sleep select"
FAIR_TARGETS="pgbouncer tenantgate tenantgate-capped"
PROFILE_CELL="select:simple:16"
SLEEP_MS=5
WORKERS=1
SCALE=10
IDLE=10000
CELLS=""
OUT=""
KEEP=0
PROFILE=0
SKIP_MATRIX=0
SKIP_INJECT=0
SKIP_TENANT=0
TENANT_CELLS="tenant:simple:16 tenant:simple:1"
HOLD=0
TG_BIN="${TG_BIN:-}"
TENANT="11111111-1111-1111-1111-111111111111"
QUIET_TENANT="22222222-2222-2222-2222-222222222222"

usage() {
  sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
  cat <<EOF

Options:
  --quick             key cells only (-S simple at 1/16/256, -S extended/prepared and TPC-B at 16),
                      3 rounds of 10 s (default: full matrix, 3 rounds of 20 s)
  --cells "S:M:C ..." cells to run: S = select|tpcb, M = simple|extended|prepared, C = clients
  --rounds N          rounds per cell (each round runs every target once)
  --duration S        seconds per pgbench run
  --pool N            upstream pool size for both proxies (default 16; 8 with --fairness)
  --fairness          only the noisy-neighbour measurement: one client of a quiet tenant
                      (pgbench -S -c 1) alone, then while another tenant floods with --flood
                      clients, through PgBouncer (one FIFO pool), tenantgate (fair queue) and
                      tenantgate with [tenant] max_server_connections = pool/2 (applied by
                      SIGHUP); reports the quiet client's p50/p99 and the flood's TPS
  --flood N           flooding clients (default 64)
  --flood-kinds "K.." sleep: each flood transaction holds its connection in pg_sleep(--sleep-ms),
                      the connection hog; select: pgbench -S, CPU-bound (default: both)
  --sleep-ms N        the sleep flood's transaction length (default 5)
  --fair-targets "…"  which of pgbouncer, tenantgate, tenantgate-capped --fairness measures, in
                      that order (default: all three); for A/B runs of two tenantgate binaries
  --workers N         tenantgate's server.worker_threads (default 1: one event loop; 0: one per core)
  --scale N           pgbench scale factor (default 10)
  --idle N            idle clients for the RSS measurement (default 10000; 0 skips)
  --skip-matrix       only the idle-client and injection measurements
  --skip-inject       no fixed-tenant vs break-glass comparison
  --skip-tenant       no tenant-scoped workload (signed vs unsigned vs PgBouncer + set_config)
  --tenant-only       only the tenant-scoped workload (signing's cost): --skip-matrix --skip-inject --idle 0
  --tenant-cells "…"  cells of the tenant group (default "tenant:simple:16 tenant:simple:1")
  --profile           perf-record tenantgate during one -S -M simple -c 16 run (perf.data kept in --out)
  --profile-cell C    the cell --profile records (default select:simple:16)
  --hold              after set-up and warm-up, print the three targets and wait (Ctrl-C cleans up):
                      for profiling by hand (perf, valgrind, strace)
  --out DIR           where results go
  --keep              keep the temp directory (data dir, configs, logs)
  TG_BIN=path         use this tenantgate binary instead of building one
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --cells) CELLS="$2"; shift ;;
    --rounds) ROUNDS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --pool) POOL="$2"; shift ;;
    --fairness) FAIRNESS=1 ;;
    --flood) FLOOD="$2"; shift ;;
    --flood-kinds) FLOOD_KINDS="$2"; shift ;;
    --fair-targets) FAIR_TARGETS="$2"; shift ;;
    --profile-cell) PROFILE_CELL="$2"; shift ;;
    --sleep-ms) SLEEP_MS="$2"; shift ;;
    --workers) WORKERS="$2"; shift ;;
    --scale) SCALE="$2"; shift ;;
    --idle) IDLE="$2"; shift ;;
    --skip-matrix) SKIP_MATRIX=1 ;;
    --skip-inject) SKIP_INJECT=1 ;;
    --skip-tenant) SKIP_TENANT=1 ;;
    --tenant-cells) TENANT_CELLS="$2"; shift ;;
    --tenant-only) SKIP_MATRIX=1 SKIP_INJECT=1 IDLE=0 ;;
    --profile) PROFILE=1 ;;
    --hold) HOLD=1 ;;
    --out) OUT="$2"; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [ "$FAIRNESS" = 1 ]; then
  : "${POOL:=8}" "${ROUNDS:=2}" "${DURATION:=10}"
  IDLE=0 SKIP_MATRIX=1 SKIP_INJECT=1 SKIP_TENANT=1 PROFILE=0
fi
: "${POOL:=16}"
if [ "$QUICK" = 1 ]; then
  : "${ROUNDS:=3}" "${DURATION:=10}"
  : "${CELLS:=select:simple:1 select:simple:16 select:simple:256 select:extended:16 select:prepared:16 tpcb:simple:16}"
else
  : "${ROUNDS:=3}" "${DURATION:=20}"
  if [ -z "$CELLS" ]; then
    for s in select tpcb; do for m in simple extended prepared; do for c in 1 16 64 256; do
      CELLS="$CELLS $s:$m:$c"
    done; done; done
  fi
fi

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and PgBouncer are started as the postgres user)"
id postgres >/dev/null 2>&1 || die "no postgres OS user (apt-get install postgresql)"
command -v python3 >/dev/null || die "python3 is needed"

PGBIN="${PGBIN:-}"
if [ -z "$PGBIN" ]; then
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
fi
[ -x "$PGBIN/initdb" ] || die "PostgreSQL server binaries not found (set PGBIN)"
PGBENCH="$PGBIN/pgbench"
[ -x "$PGBENCH" ] || PGBENCH=$(command -v pgbench)
if ! command -v pgbouncer >/dev/null 2>&1; then
  log "installing pgbouncer"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; }
fi
PGBOUNCER=$(command -v pgbouncer)
PB_VERSION=$("$PGBOUNCER" --version | awk 'NR==1{print $2}')

# 10,000 idle clients need as many descriptors in the proxy and in the client script.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ -z "$TG_BIN" ]; then
  log "building tenantgate (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin tenantgate)
  TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  TG_BIN="$TARGET_DIR/release/tenantgate"
fi
[ -x "$TG_BIN" ] || die "no tenantgate binary at $TG_BIN"

STAMP=$(date +%Y%m%d-%H%M%S)
OUT="${OUT:-$ROOT/target/bench-results/$STAMP}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS="$OUT/results.tsv"

WORK=$(mktemp -d /tmp/tg-compare.XXXXXX)
chmod 755 "$WORK"
chown postgres:postgres "$WORK"
PG_PID="" PB_PID="" TG_PID="" TS_PID="" HOLD_SLEEP=""

as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

cleanup() {
  local rc=$?
  set +e
  [ -n "$TG_PID" ] && kill "$TG_PID" 2>/dev/null && wait "$TG_PID" 2>/dev/null
  [ -n "$TS_PID" ] && kill "$TS_PID" 2>/dev/null && wait "$TS_PID" 2>/dev/null
  [ -n "$PB_PID" ] && kill "$PB_PID" 2>/dev/null && wait "$PB_PID" 2>/dev/null
  [ -n "$HOLD_SLEEP" ] && kill "$HOLD_SLEEP" 2>/dev/null
  if [ -n "$PG_PID" ] && [ -d "$WORK/pgdata" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$WORK/pgdata" -m immediate -w stop >/dev/null 2>&1
  fi
  if [ "$KEEP" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
  local port=$1 i
  for i in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
# CPU (user+system, clock ticks) and context switches of a process, all threads.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU (user+system, clock ticks) of PostgreSQL's backends: live children of the postmaster plus
# what the postmaster reaped (cutime+cstime), so backends that exit during a run still count.
pg_cpu_ticks() {
  local total c t
  total=$(awk '{print $16 + $17}' "/proc/$PG_PID/stat")
  for c in $(cat /proc/"$PG_PID"/task/*/children 2>/dev/null); do
    t=$(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0)
    total=$((total + ${t:-0}))
  done
  echo "$total"
}
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/{s += $2} END{print s + 0}'; }

PGPORT=$(free_port)
PBPORT=$(free_port)
TGPORT=$(free_port)
TSPORT=$(free_port)

# ------------------------------------------------------------------ PostgreSQL
log "initdb in $WORK/pgdata (port $PGPORT)"
printf 'bench_super\n' > "$WORK/pwfile"
chown postgres:postgres "$WORK/pwfile"
as_pg "$PGBIN/initdb" -D "$WORK/pgdata" -U postgres -E UTF8 --no-sync \
  --auth-local=trust --auth-host=scram-sha-256 --pwfile="$WORK/pwfile" >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
cat >>"$WORK/pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$WORK'
max_connections = 400
shared_buffers = 512MB
# Ephemeral benchmark cluster: no durability, so runs measure CPU and the network path.
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 4GB
checkpoint_timeout = 30min
autovacuum = off
EOF
as_pg "$PGBIN/pg_ctl" -D "$WORK/pgdata" -l "$WORK/postgres.log" -w start >/dev/null
PG_PID=$(head -1 "$WORK/pgdata/postmaster.pid")

psql_su() { as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PGPORT" -U postgres "$@"; }
psql_su -d postgres -c "CREATE DATABASE bench"
psql_su -d bench <"$ROOT/crates/pgcluster/src/schema.sql" >/dev/null
log "pgbench -i -s $SCALE"
as_pg "$PGBENCH" -i -q -s "$SCALE" -h "$WORK" -p "$PGPORT" -U postgres bench >"$WORK/pgbench-init.log" 2>&1 \
  || { cat "$WORK/pgbench-init.log" >&2; die "pgbench -i failed"; }
psql_su -d bench -c "GRANT SELECT, INSERT, UPDATE ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO app_user, tenant_admin" \
  -c "VACUUM ANALYZE" -c "CHECKPOINT"

# The same schema in a database of its own for the signed tenantgate (copied before anything
# connects to `bench`): `signing install` as the superuser (Unix socket), then the policies
# moved to tenantgate.current_tenant().
if [ "$SKIP_TENANT" = 0 ]; then
  psql_su -d postgres -c "CREATE DATABASE bench_signed TEMPLATE bench"
  "$TG_BIN" signing install --database-url "host=$WORK port=$PGPORT user=postgres dbname=bench_signed sslmode=disable" \
    --key-file "$WORK/signing.keys" 2>"$WORK/signing-install.log" \
    || { cat "$WORK/signing-install.log" >&2; die "signing install failed"; }
  {
    echo "BEGIN;"
    for t in tenants:id customers:tenant_id vehicles:tenant_id services:tenant_id appointments:tenant_id; do
      tbl=${t%%:*} col=${t##*:}
      echo "ALTER POLICY tenant_isolation ON $tbl USING ($col = (SELECT tenantgate.current_tenant())::uuid) WITH CHECK ($col = (SELECT tenantgate.current_tenant())::uuid);"
    done
    echo "COMMIT;"
  } | psql_su -d bench_signed >/dev/null
fi

# ------------------------------------------------------------------ PgBouncer
cat >"$WORK/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PGPORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PBPORT
unix_socket_dir =
auth_type = md5
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = $POOL
min_pool_size = 0
reserve_pool_size = 0
max_db_connections = $POOL
max_client_conn = $((IDLE + 2000))
server_reset_query =
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
EOF
printf '"app_user" "app_password"\n' >"$WORK/userlist.txt"
chown postgres:postgres "$WORK/pgbouncer.ini" "$WORK/userlist.txt"
# setpriv itself (not the as_pg function, which would fork a subshell) so $! is PgBouncer's pid.
setpriv --reuid=postgres --regid=postgres --init-groups -- \
  "$PGBOUNCER" "$WORK/pgbouncer.ini" >"$WORK/pgbouncer.out" 2>&1 &
PB_PID=$!
wait_port "$PBPORT" || { cat "$WORK/pgbouncer.out" >&2; die "PgBouncer did not start"; }

# ------------------------------------------------------------------ tenantgate
cat >"$WORK/tenantgate.toml" <<EOF
[server]
listen = "127.0.0.1:$TGPORT"
max_client_conn = $((IDLE + 2000))
worker_threads = $WORKERS

[upstream]
host = "127.0.0.1"
port = $PGPORT
database = "bench"
user = "app_user"
password = "app_password"
pool_mode = "transaction"
pool_size = $POOL

[upstream.breakglass]
user = "tenant_admin"
password = "admin_password"
pool_size = $POOL

[security]
event_log = "$WORK/events.jsonl"

# The benchmark user: a fixed tenant, so every transaction is injected.
[[users]]
name = "app"
password = "app_password"
auth = "md5"
tenant = "$TENANT"

# The quiet tenant of --fairness.
[[users]]
name = "quiet"
password = "app_password"
auth = "md5"
tenant = "$QUIET_TENANT"

# No injection (BYPASSRLS pool, session mode, every statement audited).
[[users]]
name = "admin"
password = "admin_password"
auth = "md5"
kind = "breakglass"
EOF
"$TG_BIN" check-config -c "$WORK/tenantgate.toml" >/dev/null || die "tenantgate rejected the generated config"
RUST_LOG="${RUST_LOG:-warn}" "$TG_BIN" serve -c "$WORK/tenantgate.toml" >"$WORK/tenantgate.log" 2>&1 &
TG_PID=$!
wait_port "$TGPORT" || { cat "$WORK/tenantgate.log" >&2; die "tenantgate did not start"; }

# ------------------------------------------------------------------ tenantgate, signed
# A second tenantgate on bench_signed with [tenant] signing_key_file.
if [ "$SKIP_TENANT" = 0 ]; then
  sed -e "s/^listen = .*/listen = \"127.0.0.1:$TSPORT\"/" \
      -e 's/^database = "bench"/database = "bench_signed"/' \
      -e "s#^event_log = .*#event_log = \"$WORK/events-signed.jsonl\"#" \
      "$WORK/tenantgate.toml" >"$WORK/tenantgate-signed.toml"
  printf '\n[tenant]\nsigning_key_file = "%s"\n' "$WORK/signing.keys" >>"$WORK/tenantgate-signed.toml"
  "$TG_BIN" check-config -c "$WORK/tenantgate-signed.toml" >/dev/null || die "tenantgate rejected the signed config"
  RUST_LOG="${RUST_LOG:-warn}" "$TG_BIN" serve -c "$WORK/tenantgate-signed.toml" >"$WORK/tenantgate-signed.log" 2>&1 &
  TS_PID=$!
  wait_port "$TSPORT" || { cat "$WORK/tenantgate-signed.log" >&2; die "signed tenantgate did not start"; }
  # The tenant-scoped scripts: the proxies inject the tenant; through PgBouncer the application
  # sets it, in the statement's own Query or as its own round trip in an explicit transaction.
  printf '\\set id random(1, 3)\nSELECT name FROM customers WHERE id = :id;\n' >"$WORK/tenant-proxy.sql"
  printf "\\\\set id random(1, 3)\nSELECT set_config('app.tenant_id', '%s', true) \\\\; SELECT name FROM customers WHERE id = :id;\n" \
    "$TENANT" >"$WORK/tenant-pb-q.sql"
  printf "\\\\set id random(1, 3)\nBEGIN;\nSELECT set_config('app.tenant_id', '%s', true);\nSELECT name FROM customers WHERE id = :id;\nCOMMIT;\n" \
    "$TENANT" >"$WORK/tenant-pb-txn.sql"
fi

target_conn() { # target -> "port user password database"
  case "$1" in
    direct) echo "$PGPORT app_user app_password bench" ;;
    pgbouncer|pgbouncer_q|pgbouncer_txn) echo "$PBPORT app_user app_password bench" ;;
    tenantgate) echo "$TGPORT app app_password bench" ;;
    signed) echo "$TSPORT app app_password bench_signed" ;;
    breakglass) echo "$TGPORT admin admin_password bench" ;;
    tenantgate-quiet) echo "$TGPORT quiet app_password bench" ;;
    *) die "unknown target $1" ;;
  esac
}

# Sanity: the proxy injects the tenant; PgBouncer and direct see none.
read -r port user pass db <<<"$(target_conn tenantgate)"
seen=$(PGPASSWORD=$pass "$PGBIN/psql" -X -At -h 127.0.0.1 -p "$port" -U "$user" -d "$db" \
  -c "SELECT current_setting('app.tenant_id', true)")
[ "$seen" = "$TENANT" ] || die "tenantgate did not inject the tenant (saw '$seen')"
if [ "$SKIP_TENANT" = 0 ]; then
  # Signed: the policies see the tenant only through a valid signature; acme has 3 customers.
  read -r port user pass db <<<"$(target_conn signed)"
  seen=$(PGPASSWORD=$pass "$PGBIN/psql" -X -At -h 127.0.0.1 -p "$port" -U "$user" -d "$db" \
    -c "SELECT count(*) FROM customers")
  [ "$seen" = 3 ] || die "the signed tenantgate does not see its tenant's rows (saw '$seen')"
fi

{
  echo "# date = $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# host = $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, $(uname -r)"
  echo "# commit = $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted src changes)')"
  echo "# postgres = $("$PGBIN/postgres" --version)"
  echo "# pgbouncer = $PB_VERSION"
  echo "# pgbench = $("$PGBENCH" --version)"
  echo "# pool = $POOL, scale = $SCALE, rounds = $ROUNDS, duration = ${DURATION}s, -j min(2, clients), tenantgate worker_threads = $WORKERS"
  echo "# load_before = $(cut -d' ' -f1-3 /proc/loadavg)"
  printf 'group\tcell\ttarget\tround\ttps\tfailed\tavg_us\tp50_us\tp99_us\trc\tproxy_cpu_us_per_txn\tproxy_ctxsw_per_txn\tpg_cpu_us_per_txn\n'
} >"$RESULTS"

# One pgbench run; appends a row to results.tsv.
run_pgbench() {
  local group=$1 cell=$2 target=$3 round=$4 dur=$5
  local script mode clients port user pass db
  IFS=: read -r script mode clients <<<"$cell"
  read -r port user pass db <<<"$(target_conn "$target")"
  local jobs=$(( clients < 2 ? clients : 2 ))
  local prefix="$WORK/log-$group-${cell//:/-}-$target-$round"
  local args=(-n -M "$mode" -c "$clients" -j "$jobs" -T "$dur" -h 127.0.0.1 -p "$port" -U "$user")
  [ "$script" = select ] && args+=(-S)
  if [ "$script" = tenant ]; then
    case "$target" in
      pgbouncer_q) args+=(-f "$WORK/tenant-pb-q.sql") ;;
      pgbouncer_txn) args+=(-f "$WORK/tenant-pb-txn.sql") ;;
      *) args+=(-f "$WORK/tenant-proxy.sql") ;;
    esac
  fi
  [ "$group" = warmup ] || args+=(--log "--log-prefix=$prefix")
  local ppid=""
  case "$target" in
    tenantgate|breakglass) ppid=$TG_PID ;;
    signed) ppid=$TS_PID ;;
    pgbouncer|pgbouncer_q|pgbouncer_txn) ppid=$PB_PID ;;
  esac
  local c0=0 s0=0 g0
  [ -n "$ppid" ] && { c0=$(cpu_ticks "$ppid"); s0=$(ctx_switches "$ppid"); }
  g0=$(pg_cpu_ticks)
  local rc=0
  PGPASSWORD=$pass "$PGBENCH" "${args[@]}" "$db" >"$prefix.out" 2>&1 || rc=$?
  [ "$group" = warmup ] && { rm -f "$prefix".*; return 0; }
  local ncpu=nan nsw=nan npg=nan n g1
  g1=$(pg_cpu_ticks)
  n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$prefix.out" | head -1)
  if [ "${n:-0}" -gt 0 ]; then
    npg=$(python3 -c "import os; print(round(($g1 - $g0) * 1e6 / os.sysconf('SC_CLK_TCK') / $n, 2))")
  fi
  if [ -n "$ppid" ] && [ "${n:-0}" -gt 0 ]; then
    local c1 s1
    c1=$(cpu_ticks "$ppid"); s1=$(ctx_switches "$ppid")
    ncpu=$(python3 -c "import os; print(round(($c1 - $c0) * 1e6 / os.sysconf('SC_CLK_TCK') / $n, 2))")
    nsw=$(python3 -c "print(round(($s1 - $s0) / $n, 3))")
  fi
  local tps failed stats
  tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$prefix.out" | head -1)
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$prefix.out" | head -1)
  stats=$(python3 "$TOOLS/pgbench_stats.py" run "$prefix")
  read -r avg p50 p99 _n _nf <<<"$stats"
  if [ "$rc" != 0 ]; then
    cp "$prefix.out" "$OUT/failed-$group-${cell//:/-}-$target-$round.out"
    log "  $target: pgbench exited $rc (output kept in $OUT)"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$group" "$cell" "$target" "$round" \
    "${tps:-0}" "${failed:-0}" "$avg" "$p50" "$p99" "$rc" "$ncpu" "$nsw" "$npg" >>"$RESULTS"
  local cpu_note=""
  [ "$ncpu" != nan ] && cpu_note=" proxy_cpu=${ncpu}us/txn"
  cpu_note="$cpu_note pg_cpu=${npg}us/txn"
  log "  $target r$round: tps=${tps:-?} p50=${p50}us p99=${p99}us failed=${failed:-0}$cpu_note"
  rm -f "$prefix".[0-9]* "$prefix.out"
}

# PgBouncer before 1.21 has no prepared-statement support in transaction mode.
pgbouncer_prepared_ok() {
  python3 -c "import sys; v=tuple(int(x) for x in '$PB_VERSION'.split('.')[:2]); sys.exit(0 if v >= (1, 21) else 1)"
}

# ------------------------------------------------------------------ warm-up
log "warm-up"
for t in direct pgbouncer tenantgate; do run_pgbench warmup select:simple:16 "$t" 0 3; done

if [ "$HOLD" = 1 ]; then
  cp "$WORK/tenantgate.toml" "$OUT/"
  log "holding. PostgreSQL: superuser socket -h $WORK -p $PGPORT -U postgres; app_user/app_password on 127.0.0.1:$PGPORT"
  log "PgBouncer (pid $PB_PID): 127.0.0.1:$PBPORT app_user/app_password; tenantgate (pid $TG_PID): 127.0.0.1:$TGPORT app/app_password, admin/admin_password"
  log "tenantgate config copied to $OUT/tenantgate.toml; Ctrl-C (or kill $$) stops everything"
  printf 'PGPORT=%s\nPBPORT=%s\nTGPORT=%s\nTG_PID=%s\nPB_PID=%s\nWORK=%s\n' \
    "$PGPORT" "$PBPORT" "$TGPORT" "$TG_PID" "$PB_PID" "$WORK" >"$OUT/hold.env"
  while true; do sleep 3600 & HOLD_SLEEP=$!; wait "$HOLD_SLEEP" || true; done
fi

# ------------------------------------------------------------------ fairness (issue 17)
# One pgbench run of the quiet tenant (-S -c 1), alone or while `flood_kind` floods from the
# other tenant; appends the quiet client's row and, under a flood, the flood's row.
fair_run() {
  local target=$1 kind=$2 phase=$3 round=$4
  local qport quser qpass fport fuser fpass
  case "$target" in
    pgbouncer) read -r qport quser qpass _ <<<"$(target_conn pgbouncer)"
               read -r fport fuser fpass _ <<<"$(target_conn pgbouncer)" ;;
    *) read -r qport quser qpass _ <<<"$(target_conn tenantgate-quiet)"
       read -r fport fuser fpass _ <<<"$(target_conn tenantgate)" ;;
  esac
  local prefix="$WORK/log-fair-$target-$kind-$phase-$round"
  local flood_pid="" flood_out="$WORK/flood-$target-$kind-$round.out"
  if [ "$phase" = flood ]; then
    local fargs=(-n -M simple -c "$FLOOD" -j 2 -T $((DURATION + 4)) -h 127.0.0.1 -p "$fport" -U "$fuser")
    if [ "$kind" = sleep ]; then fargs+=(-f "$WORK/flood-sleep.sql"); else fargs+=(-S); fi
    PGPASSWORD=$fpass "$PGBENCH" "${fargs[@]}" bench >"$flood_out" 2>&1 &
    flood_pid=$!
    sleep 2
  fi
  local rc=0
  PGPASSWORD=$qpass "$PGBENCH" -n -S -M simple -c 1 -j 1 -T "$DURATION" -h 127.0.0.1 -p "$qport" \
    -U "$quser" --log "--log-prefix=$prefix" bench >"$prefix.out" 2>&1 || rc=$?
  local frc=0 ftps=nan
  if [ -n "$flood_pid" ]; then
    wait "$flood_pid" || frc=$?
    ftps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$flood_out" | head -1)
    [ "$frc" = 0 ] || cp "$flood_out" "$OUT/failed-flood-$target-$kind-$round.out"
  fi
  local tps failed stats avg p50 p99
  tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$prefix.out" | head -1)
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$prefix.out" | head -1)
  stats=$(python3 "$TOOLS/pgbench_stats.py" run "$prefix")
  read -r avg p50 p99 _n _nf <<<"$stats"
  [ "$rc" = 0 ] || cp "$prefix.out" "$OUT/failed-fair-$target-$kind-$phase-$round.out"
  printf 'fairness\tquiet:%s:%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\tnan\tnan\tnan\n' "$kind" "$phase" \
    "$target" "$round" "${tps:-0}" "${failed:-0}" "$avg" "$p50" "$p99" "$rc" >>"$RESULTS"
  if [ -n "$flood_pid" ]; then
    printf 'fairness\tflood:%s\t%s\t%s\t%s\t0\tnan\tnan\tnan\t%s\tnan\tnan\tnan\n' "$kind" "$target" \
      "$round" "${ftps:-0}" "$frc" >>"$RESULTS"
  fi
  log "  $target $kind $phase r$round: quiet p50=${p50}us p99=${p99}us tps=${tps:-?}; flood tps=$ftps"
  rm -f "$prefix".[0-9]* "$prefix.out" "$flood_out"
}

if [ "$FAIRNESS" = 1 ]; then
  printf 'SELECT pg_sleep(%s);\n' "$(python3 -c "print($SLEEP_MS / 1000)")" >"$WORK/flood-sleep.sql"
  CAP=$(( POOL / 2 > 0 ? POOL / 2 : 1 ))
  echo "# fairness: flood = $FLOOD clients ($FLOOD_KINDS; sleep = pg_sleep(${SLEEP_MS}ms) per transaction), quiet = 1 client -S, tenantgate-capped: max_server_connections = $CAP" >>"$RESULTS"
  for target in $FAIR_TARGETS; do
    if [ "$target" = tenantgate-capped ]; then
      printf '\n[tenant]\nmax_server_connections = %s\n' "$CAP" >>"$WORK/tenantgate.toml"
      "$TG_BIN" check-config -c "$WORK/tenantgate.toml" >/dev/null || die "the capped config is refused"
      kill -HUP "$TG_PID"
      sleep 1
      ! grep -q "reload refused" "$WORK/tenantgate.log" || die "tenantgate refused the reload"
    fi
    for kind in $FLOOD_KINDS; do
      for round in $(seq 1 "$ROUNDS"); do
        log "fairness $target $kind round $round/$ROUNDS"
        fair_run "$target" "$kind" alone "$round"
        fair_run "$target" "$kind" flood "$round"
      done
    done
  done
fi

# ------------------------------------------------------------------ idle clients
if [ "$IDLE" -gt 0 ]; then
  for t in tenantgate pgbouncer; do
    read -r port user pass _ <<<"$(target_conn "$t")"
    pid=$TG_PID
    [ "$t" = pgbouncer ] && pid=$PB_PID
    log "idle clients: $IDLE against $t (pid $pid)"
    python3 "$TOOLS/idle_clients.py" --port "$port" --user "$user" --password "$pass" \
      --database bench --count "$IDLE" --pid "$pid" >"$OUT/idle-$t.json"
    log "  $(cat "$OUT/idle-$t.json")"
    echo "# idle_$t = $(cat "$OUT/idle-$t.json")" >>"$RESULTS"
    sleep 2
  done
fi

# ------------------------------------------------------------------ matrix
if [ "$SKIP_MATRIX" = 0 ]; then
  for cell in $CELLS; do
    for round in $(seq 1 "$ROUNDS"); do
      log "matrix $cell round $round/$ROUNDS"
      for t in direct pgbouncer tenantgate; do
        if [ "$t" = pgbouncer ] && [[ "$cell" == *:prepared:* ]] && ! pgbouncer_prepared_ok; then
          continue
        fi
        run_pgbench matrix "$cell" "$t" "$round" "$DURATION"
      done
    done
  done
fi

# ------------------------------------------------------------------ injection cost
if [ "$SKIP_INJECT" = 0 ]; then
  for cell in select:simple:1 select:simple:16; do
    for round in $(seq 1 "$ROUNDS"); do
      log "injection $cell round $round/$ROUNDS"
      for t in tenantgate breakglass; do run_pgbench inject "$cell" "$t" "$round" "$DURATION"; done
    done
  done
fi

# ------------------------------------------------------------------ tenant-scoped workload
if [ "$SKIP_TENANT" = 0 ]; then
  for t in signed pgbouncer_q; do run_pgbench warmup tenant:simple:16 "$t" 0 3; done
  for cell in $TENANT_CELLS; do
    for round in $(seq 1 "$ROUNDS"); do
      log "tenant $cell round $round/$ROUNDS"
      for t in tenantgate signed pgbouncer_q pgbouncer_txn; do
        run_pgbench tenant "$cell" "$t" "$round" "$DURATION"
      done
    done
  done
fi

# ------------------------------------------------------------------ profile
if [ "$PROFILE" = 1 ]; then
  if command -v perf >/dev/null 2>&1; then
    log "perf record of tenantgate during $PROFILE_CELL"
    perf record -e cpu-clock -F 999 -g --call-graph dwarf,16384 -p "$TG_PID" -o "$WORK/perf.data" \
      -- sleep "$DURATION" >"$WORK/perf.log" 2>&1 &
    perf_pid=$!
    run_pgbench profile "$PROFILE_CELL" tenantgate 1 "$DURATION"
    wait "$perf_pid" || true
    cp "$WORK/perf.data" "$OUT/perf.data" 2>/dev/null || true
    perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio --percent-limit 0.5 \
      >"$OUT/perf-report.txt" 2>/dev/null || true
    perf report -i "$WORK/perf.data" --children --sort symbol --stdio --percent-limit 2 -g none \
      >"$OUT/perf-report-children.txt" 2>/dev/null || true
    PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
    if command -v inferno-collapse-perf >/dev/null 2>&1; then
      perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph \
        >"$OUT/flamegraph.svg" || true
    fi
    command -v inferno-flamegraph >/dev/null 2>&1 || log "no flame graph: cargo install inferno"
    log "profile in $OUT/perf-report.txt"
  else
    log "perf not installed (apt-get install linux-perf); skipping the profile"
  fi
fi

echo "# load_after = $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS"
echo "# tenantgate_rss_end_kib = $(rss_kib "$TG_PID")" >>"$RESULTS"
python3 "$TOOLS/pgbench_stats.py" summary "$RESULTS" >"$OUT/summary.md"
{ grep '^#' "$RESULTS"; echo; cat "$OUT/summary.md"; } | tee "$OUT/report.md"
log "results in $OUT"
