#!/usr/bin/env bash
# Installs what the driver matrix (tests/drivers.rs) needs, and only what is missing:
#   psycopg 3 + asyncpg (pip), node-postgres (npm, into tests/drivers/), pgjdbc + a JDK (apt).
# Idempotent and quiet; runs as root on Debian 12 (CI). `apt-get update` runs at most once,
# and only when something has to come from apt.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
drivers="$root/tests/drivers"
export DEBIAN_FRONTEND=noninteractive
# Debian's system Python refuses pip installs (PEP 668) unless told; older pips ignore this.
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# Runs a command silently; shows its output only if it fails.
quiet() {
    local log
    log="$(mktemp)"
    if ! "$@" >"$log" 2>&1; then
        echo "install-test-deps: failed: $*" >&2
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        quiet apt-get update -qq
        apt_updated=1
    fi
    quiet apt-get install -y -qq --no-install-recommends "$@"
}

# --- Python: psycopg 3 and asyncpg -------------------------------------------------------
if ! python3 -c 'import psycopg, asyncpg' >/dev/null 2>&1; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    quiet python3 -m pip install -q 'psycopg[binary]' asyncpg
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
    (cd "$drivers" && quiet npm install --no-audit --no-fund --no-package-lock pg@^8)
    (cd "$drivers" && node -e 'require("pg")')
fi

# --- Java: a JDK (single-file source launch) and pgjdbc ----------------------------------
if [ ! -f /usr/share/java/postgresql.jar ] || ! command -v java >/dev/null 2>&1; then
    apt_install default-jdk-headless libpostgresql-jdbc-java
fi
