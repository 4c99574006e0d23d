#!/usr/bin/env bash
# Installs what the test suite needs, and only what is missing, saying what it installs:
#   PostgreSQL server binaries (initdb, pg_ctl, postgres, pgbench) and psql (apt: postgresql,
#   postgresql-client), setpriv (util-linux; to run the server as `postgres` when tests run as
#   root), psycopg 3 + asyncpg (pip), node-postgres (npm, into tests/drivers/), pgjdbc + a JDK
#   (apt) for the driver matrix (tests/drivers.rs).
# apt runs as root, or through `sudo` when not root (sudo may ask for your password). Without
# either, it prints the command to run and stops. `apt-get update` runs at most once, and only
# when something has to come from apt.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
drivers="$root/tests/drivers"
export DEBIAN_FRONTEND=noninteractive
# Debian's system Python refuses pip installs (PEP 668) unless told; older pips ignore this.
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

say() { echo "install-test-deps: $*" >&2; }

# Runs a command silently; shows its output only if it fails.
quiet() {
    local log
    log="$(mktemp)"
    if ! "$@" >"$log" 2>&1; then
        say "failed: $*"
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}

# How to run apt: directly as root, else through sudo.
as_root=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        as_root=(missing)
    fi
fi

apt_updated=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1 || [ "${as_root[*]}" = missing ]; then
        say "cannot install $* here (needs apt-get as root or with sudo); install them, e.g.:"
        say "  sudo apt-get install $*"
        exit 1
    fi
    say "installing (apt${as_root:+ via sudo}): $*"
    if [ "$apt_updated" = 0 ]; then
        quiet "${as_root[@]}" apt-get update -qq
        apt_updated=1
    fi
    quiet "${as_root[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

# --- PostgreSQL: server binaries for the throwaway clusters, psql, pgbench ------------------
have_bin() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/$1" ]; then return 0; fi
    compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}
pg=()
{ have_bin initdb && have_bin pg_ctl && have_bin pgbench; } || pg+=(postgresql)
command -v psql >/dev/null 2>&1 || pg+=(postgresql-client)
if [ "$(id -u)" = 0 ]; then command -v setpriv >/dev/null 2>&1 || pg+=(util-linux); fi
if [ ${#pg[@]} -gt 0 ]; then
    apt_install "${pg[@]}"
fi

# --- Python: psycopg 3 and asyncpg -------------------------------------------------------
if ! python3 -c 'import psycopg, asyncpg' >/dev/null 2>&1; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    say "installing (pip): psycopg[binary] asyncpg"
    user_flag=()
    [ "$(id -u)" = 0 ] || user_flag=(--user)
    quiet python3 -m pip install -q "${user_flag[@]}" 'psycopg[binary]' asyncpg
    python3 -c 'import psycopg, asyncpg'
fi

# --- Node: pg into tests/drivers/node_modules --------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi
if [ ! -f "$drivers/package.json" ]; then
    cat >"$drivers/package.json" <<'JSON'
{
  "name": "tenantgate-driver-checks",
  "private": true,
  "description": "Drivers exercised by tests/drivers.rs",
  "dependencies": {
    "pg": "^8"
  }
}
JSON
fi
if ! (cd "$drivers" && node -e 'require("pg")') >/dev/null 2>&1; then
    say "installing (npm, into tests/drivers/): pg@^8"
    (cd "$drivers" && quiet npm install --no-audit --no-fund --no-package-lock pg@^8)
    (cd "$drivers" && node -e 'require("pg")')
fi

# --- Java: a JDK (single-file source launch) and pgjdbc ----------------------------------
if [ ! -f /usr/share/java/postgresql.jar ] || ! command -v java >/dev/null 2>&1; then
    apt_install default-jdk-headless libpostgresql-jdbc-java
fi
