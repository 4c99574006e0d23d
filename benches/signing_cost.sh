#!/usr/bin/env bash
# Where the signed tenant context's cost goes, measured in PostgreSQL alone (no proxy).
#
# One throwaway cluster, the demo schema, one database per policy variant on `customers`:
#   raw      tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid (unsigned)
#   call     (SELECT f()) with f a PL/pgSQL SECURITY DEFINER returning the setting: the call alone
#   floor    the same f reading one key row, no HMAC: the floor of any function reading a table
#   signed   (SELECT tenantgate.current_tenant()) as `tenantgate signing install` writes it
#   pgcrypto the same with pgcrypto installed (its hmac())
#   view     a security_barrier view owned by the key owner, the installed HMAC in its WHERE
# The statement is the tenant group's RLS point select (`SELECT name FROM customers WHERE id =
# n`) as app_user, with the tenant and a valid signature set once per session.
#
# For each variant: instructions per statement counted exactly by callgrind on `postgres
# --single` (N+100 statements minus 100; simple protocol, and PREPARE/EXECUTE for a cached plan),
# then PostgreSQL CPU µs per transaction and TPS with pgbench (-c 1 and -c 16, Unix socket,
# ROUNDS alternating rounds; noisy on a shared machine). docs/benchmarks.md has the results.
#
#   benches/signing_cost.sh                 # all variants, callgrind and pgbench
#   N=500 SECONDS_PER_RUN=5 benches/signing_cost.sh
#
# Needs root (PostgreSQL runs as `postgres` via setpriv), PostgreSQL server binaries (PGBIN),
# valgrind for the instruction counts (skipped without it), and a tenantgate binary (TG_BIN,
# default target/release/tenantgate) for `signing install --print`. Leaves nothing behind.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TG_BIN="${TG_BIN:-$ROOT/target/release/tenantgate}"
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
N="${N:-1000}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
CLIENTS="${CLIENTS:-1 16}"
ROUNDS="${ROUNDS:-2}"
VARIANTS="${VARIANTS:-raw call floor signed pgcrypto view}"
TENANT=11111111-1111-1111-1111-111111111111

log() { printf '[signing_cost %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$TG_BIN" ] || die "no tenantgate binary at $TG_BIN (cargo build --release)"
[ -x "$PGBIN/initdb" ] || die "PostgreSQL server binaries not found (set PGBIN)"

WORK=$(mktemp -d /tmp/tg-signing-cost.XXXXXX)
chmod 755 "$WORK"
chown postgres:postgres "$WORK"
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
cleanup() {
  set +e
  [ -f "$WORK/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/log" -w start >/dev/null; }
stop() { as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -w stop >/dev/null; }
psql_su() { PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p 5432 -U postgres "$@"; }

as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --no-sync >/dev/null
cat >>"$WORK/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$WORK'
fsync = off
synchronous_commit = off
autovacuum = off
EOF
start
psql_su -d postgres -c "CREATE DATABASE base"
psql_su -d base <"$ROOT/crates/pgcluster/src/schema.sql" >/dev/null
# The key owner, schema and key table as `signing install` creates them (and the function).
printf 'k1 %s\n' "$(printf '07%.0s' $(seq 32))" >"$WORK/keys"
chmod 600 "$WORK/keys"
"$TG_BIN" signing install --print --key-file "$WORK/keys" 2>/dev/null | psql_su -d base >/dev/null
# A benchmark-only signer (superuser-owned, callable by app_user): the signature for this backend.
psql_su -d base <<'EOF'
CREATE SCHEMA bench;
GRANT USAGE ON SCHEMA bench TO PUBLIC;
CREATE FUNCTION bench.sign(t text) RETURNS text LANGUAGE sql SECURITY DEFINER AS $$
  SELECT k.key_id || ':' || encode(sha256(k.opad || sha256(k.ipad || convert_to(concat_ws(chr(10),
         'tenantgate-v1', k.key_id, pg_backend_pid()::text, t), 'UTF8'))), 'hex')
    FROM tenantgate.signing_keys k LIMIT 1 $$;
VACUUM ANALYZE;
EOF

signed_policy="ALTER POLICY tenant_isolation ON customers USING (tenant_id = (SELECT tenantgate.current_tenant())::uuid)"
plpgsql() { # body -> CREATE OR REPLACE of tenantgate.current_tenant() with that body
  printf '%s\n' "CREATE OR REPLACE FUNCTION tenantgate.current_tenant() RETURNS text LANGUAGE plpgsql
  STABLE SECURITY DEFINER PARALLEL RESTRICTED AS \$fn\$ $1 \$fn\$;
ALTER FUNCTION tenantgate.current_tenant() OWNER TO tenantgate_owner;"
}
for v in $VARIANTS; do
  psql_su -d postgres -c "CREATE DATABASE v_$v TEMPLATE base"
  case "$v" in
    raw) ;;
    call) { plpgsql "BEGIN RETURN pg_catalog.current_setting('app.tenant_id', true); END"; echo "$signed_policy;"; } | psql_su -d "v_$v" ;;
    floor) { plpgsql "DECLARE t pg_catalog.text; BEGIN SELECT pg_catalog.current_setting('app.tenant_id', true) INTO t
      FROM tenantgate.signing_keys AS k; RETURN t; END"; echo "$signed_policy;"; } | psql_su -d "v_$v" ;;
    signed) psql_su -d "v_$v" -c "$signed_policy" ;;
    pgcrypto)
      psql_su -d "v_$v" -c "CREATE EXTENSION pgcrypto"
      "$TG_BIN" signing install --print --key-file "$WORK/keys" 2>/dev/null | psql_su -d "v_$v" >/dev/null
      psql_su -d "v_$v" -c "$signed_policy" ;;
    view) # the installed body's WHERE clause, as a view's
      psql_su -d "v_$v" <<'EOF'
DO $$
DECLARE w text;
BEGIN
  SELECT substring(prosrc FROM 'WHERE (.*);\s*RETURN') INTO w FROM pg_proc WHERE proname = 'current_tenant';
  EXECUTE 'CREATE VIEW tenantgate.context WITH (security_barrier) AS SELECT '
       || 'pg_catalog.current_setting(''app.tenant_id''::pg_catalog.text, true) AS tenant '
       || 'FROM tenantgate.signing_keys AS k WHERE ' || w;
END $$;
ALTER VIEW tenantgate.context OWNER TO tenantgate_owner;
GRANT SELECT ON tenantgate.context TO PUBLIC;
ALTER POLICY tenant_isolation ON customers USING (tenant_id = (SELECT tenant FROM tenantgate.context)::uuid);
EOF
      ;;
    *) die "unknown variant $v" ;;
  esac
done

setup="SET ROLE app_user
SELECT set_config('app.tenant_id', '$TENANT', false), set_config('tenantgate.signature', bench.sign('$TENANT'), false)"
script() { # variant count prepared -> postgres --single input
  echo "$setup"
  [ "$3" = 1 ] && echo 'PREPARE q(bigint) AS SELECT name FROM customers WHERE id = $1'
  local i
  for i in $(seq 1 "$2"); do
    if [ "$3" = 1 ]; then echo "EXECUTE q($((i % 3 + 1)))"; else echo "SELECT name FROM customers WHERE id = $((i % 3 + 1))"; fi
  done
}
instructions() { # variant count prepared -> total instructions
  script "$@" >"$WORK/in"
  chown postgres "$WORK/in"
  as_pg valgrind --tool=callgrind --callgrind-out-file=/dev/null "$PGBIN/postgres" --single -D "$WORK/data" "v_$1" \
    <"$WORK/in" 2>"$WORK/vg" | grep -c 'name = "acme' >"$WORK/rows" || true
  [ "$(cat "$WORK/rows")" -ge "$2" ] || die "$1: the point selects returned no rows (signature refused?)"
  grep -o 'Collected : [0-9]*' "$WORK/vg" | awk '{print $3}'
}

declare -A SIMPLE=() PREPARED=()
if command -v valgrind >/dev/null; then
  stop
  for v in $VARIANTS; do
    for p in 0 1; do
      a=$(instructions "$v" 100 "$p")
      b=$(instructions "$v" $((N + 100)) "$p")
      if [ "$p" = 0 ]; then SIMPLE[$v]=$(((b - a) / N)); else PREPARED[$v]=$(((b - a) / N)); fi
    done
  done
  printf 'variant\tinstructions/statement simple\tinstructions/statement prepared\n'
  for v in $VARIANTS; do printf '%s\t%s\t%s\n' "$v" "${SIMPLE[$v]}" "${PREPARED[$v]}"; done
  start
fi

cat >"$WORK/pgbench.sql" <<EOF
\\set id random(1, 3)
\\if :done = 0
SELECT 1 AS done, set_config('app.tenant_id', '$TENANT', false), set_config('tenantgate.signature', bench.sign('$TENANT'), false) \\gset
\\endif
SELECT name FROM customers WHERE id = :id;
EOF
PM=$(head -1 "$WORK/data/postmaster.pid")
printf '\nvariant\tclients\tround\tpgbench TPS\tPostgreSQL CPU us/txn\n'
for r in $(seq 1 "$ROUNDS"); do
  for c in $CLIENTS; do
    for v in $VARIANTS; do
      # Backends exit when pgbench does and the postmaster reaps them: its cutime+cstime.
      a=$(awk '{print $16 + $17}' "/proc/$PM/stat")
      out=$(PGPASSWORD=app_password "$PGBIN/pgbench" -n -h "$WORK" -p 5432 -U app_user -c "$c" -j "$((c > 1 ? 2 : 1))" \
        -T "$SECONDS_PER_RUN" -D done=0 -f "$WORK/pgbench.sql" "v_$v" 2>&1)
      sleep 0.5
      b=$(awk '{print $16 + $17}' "/proc/$PM/stat")
      n=$(echo "$out" | awk '/actually processed/{print $NF}' | cut -d/ -f1)
      tps=$(echo "$out" | awk '/^tps/{printf "%d", $3}')
      us=$(python3 -c "print(round(($b - $a) * 1e6 / $(getconf CLK_TCK) / $n, 1))")
      printf '%s\t%s\t%s\t%s\t%s\n' "$v" "$c" "$r" "$tps" "$us"
    done
  done
done
