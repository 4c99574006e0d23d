#!/usr/bin/env python3
"""asyncpg through tenantgate (transaction pooling): run by tests/drivers.rs.

Exercises, from several concurrent clients over at least two tenants:
  * asyncpg's statement cache: the same queries repeated (named `__asyncpg_stmt_N__`
    statements, prepared once per client connection, which the proxy re-prepares on whichever
    upstream a later transaction lands on);
  * conn.prepare() statements reused across many transactions and outside them;
  * executemany into customers inside a transaction (rolled back), and an executemany with
    another tenant's id that RLS must refuse as a whole;
  * `async with conn.transaction()`, committed and rolled back, and a cursor (named portal
    fetched in chunks) inside one.
After every query it checks that what came back belongs to the client's own tenant.

Environment:
  TG_HOST, TG_PORT, TG_DB, TG_PASSWORD   where the proxy is
  TG_TENANTS   JSON list of {"user", "id", "slug", "customers", "vehicles", "services",
               "appointments"}
  TG_CLIENTS_PER_TENANT (default 2), TG_ROUNDS (default 20)
Exit status 0 when every check held; otherwise what was seen is printed and it exits 1.
"""

import asyncio
import json
import os
import sys
import time
import traceback

import asyncpg

HOST = os.environ.get("TG_HOST", "127.0.0.1")
PORT = int(os.environ["TG_PORT"])
DB = os.environ["TG_DB"]
PASSWORD = os.environ["TG_PASSWORD"]
TENANTS = json.loads(os.environ["TG_TENANTS"])
CLIENTS_PER_TENANT = int(os.environ.get("TG_CLIENTS_PER_TENANT", "2"))
ROUNDS = int(os.environ.get("TG_ROUNDS", "20"))


class Mismatch(Exception):
    """A row or a setting that is not the client's own tenant's."""


class Rollback(Exception):
    """Raised inside `conn.transaction()` to roll it back on purpose."""


class Client:
    def __init__(self, tenant, no, other):
        self.t = tenant
        self.no = no
        self.other = other  # another tenant's id, for writes RLS must refuse
        self.queries = 0
        self.label = f"{tenant['slug']}#{no} ({tenant['user']})"

    # --- checks ---------------------------------------------------------------------------
    def fail(self, what, seen):
        raise Mismatch(f"{self.label}: {what}: saw {seen!r}")

    def names(self, rows, col=0):
        for r in rows:
            if not str(r[col]).startswith(self.t["slug"]):
                self.fail(f"row not of tenant {self.t['slug']}", tuple(r))
        return rows

    def setting(self, value):
        if value != self.t["id"]:
            self.fail(f"app.tenant_id is not {self.t['id']}", value)

    def count(self, table, value, extra=0):
        want = self.t[table] + extra
        if value != want:
            self.fail(f"count({table}) expected {want}", value)

    async def val(self, conn_or_stmt, *args):
        self.queries += 1
        return await conn_or_stmt.fetchval(*args)

    async def rows(self, conn_or_stmt, *args):
        self.queries += 1
        return await conn_or_stmt.fetch(*args)

    async def server_statements(self, conn):
        """On the upstream this transaction runs on, the statements just used exist under the
        proxy's names (`__tg_...`) and asyncpg's own names never arrived."""
        names = [r[0] for r in await self.rows(conn, "select name from pg_prepared_statements")]
        if not any(n.startswith("__tg_") for n in names) or any(n.startswith("__asyncpg") for n in names):
            self.fail("server-side prepared statements", names)

    # --- the workload ---------------------------------------------------------------------
    async def run(self):
        conn = await asyncpg.connect(
            host=HOST,
            port=PORT,
            user=self.t["user"],
            password=PASSWORD,
            database=DB,
            ssl=False,
            timeout=10,
        )
        try:
            count_stmt = await conn.prepare("select count(*) from customers")
            setting_stmt = await conn.prepare("select current_setting('app.tenant_id')")
            names_stmt = await conn.prepare(
                "select name, current_setting('app.tenant_id') from customers where name like $1"
            )
            self.queries += 3
            for rnd in range(ROUNDS):
                await self.cached(conn)
                await self.prepared(conn, count_stmt, setting_stmt, names_stmt, commit=rnd % 2 == 0)
                await self.executemany(conn, count_stmt)
                if rnd % 4 == 0:
                    await self.refused_executemany(conn, count_stmt)
                await self.cursor(conn, setting_stmt)
        finally:
            await conn.close()

    async def cached(self, conn):
        # Statement cache: the same texts every round.
        self.count("customers", await self.val(conn, "select count(*) from customers"))
        self.setting(await self.val(conn, "select current_setting('app.tenant_id')"))
        rows = await self.rows(
            conn, "select name, current_setting('app.tenant_id') from customers where name like $1",
            self.t["slug"] + "%",
        )
        self.count("customers", len(self.names(rows)))
        for r in rows:
            self.setting(r[1])
        other = await self.val(conn, "select count(*) from customers where name not like $1", self.t["slug"] + "%")
        if other != 0:
            self.fail("rows of other tenants visible", other)
        self.count("vehicles", await self.val(conn, "select count(*) from vehicles where tenant_id = $1::uuid", self.t["id"]))

    async def prepared(self, conn, count_stmt, setting_stmt, names_stmt, commit):
        try:
            async with conn.transaction():
                self.count("customers", await self.val(count_stmt))
                self.setting(await self.val(setting_stmt))
                rows = await self.rows(names_stmt, self.t["slug"] + "%")
                self.count("customers", len(self.names(rows)))
                for r in rows:
                    self.setting(r[1])
                await self.server_statements(conn)
                if not commit:
                    raise Rollback()
        except Rollback:
            pass
        # The same statements outside a transaction.
        self.count("customers", await self.val(count_stmt))
        self.setting(await self.val(setting_stmt))

    async def executemany(self, conn, count_stmt):
        insert = "insert into customers (tenant_id, name) values (current_setting('app.tenant_id')::uuid, $1)"
        try:
            async with conn.transaction():
                await conn.executemany(insert, [(f"{self.t['slug']} asyncpg {self.no}.{i}",) for i in range(5)])
                self.queries += 5
                self.count("customers", await self.val(count_stmt), 5)
                self.names(await self.rows(conn, "select name from customers"))
                raise Rollback()
        except Rollback:
            pass
        self.count("customers", await self.val(count_stmt))

    async def refused_executemany(self, conn, count_stmt):
        # Rows for another tenant: RLS's WITH CHECK refuses, and executemany is atomic.
        insert = "insert into customers (tenant_id, name) values ($1::uuid, $2)"
        rows = [(self.t["id"], f"{self.t['slug']} mine"), (self.other, f"{self.t['slug']} theirs")]
        try:
            await conn.executemany(insert, rows)
        except asyncpg.exceptions.InsufficientPrivilegeError:
            pass
        else:
            self.fail("insert of another tenant's row was allowed", rows)
        self.queries += 2
        self.count("customers", await self.val(count_stmt))

    async def cursor(self, conn, setting_stmt):
        async with conn.transaction():
            seen = 0
            async for r in conn.cursor(
                "select name, current_setting('app.tenant_id') from customers order by id", prefetch=2
            ):
                self.names([r])
                self.setting(r[1])
                seen += 1
            self.queries += 1
            self.count("customers", seen)
            cur = await conn.cursor("select name from customers order by id")
            first = await cur.fetch(2)
            self.queries += 1
            self.names(first)
            self.setting(await self.val(setting_stmt))


async def main():
    if len({t["id"] for t in TENANTS}) < 2:
        print("need at least two tenants in TG_TENANTS", file=sys.stderr)
        return 2
    began = time.monotonic()
    clients = []
    for i, t in enumerate(TENANTS):
        other = TENANTS[(i + 1) % len(TENANTS)]["id"]
        clients += [Client(t, n, other) for n in range(CLIENTS_PER_TENANT)]
    results = await asyncio.gather(*(c.run() for c in clients), return_exceptions=True)
    errors = [
        f"{c.label}: {type(r).__name__}: {r}\n{''.join(traceback.format_exception(r))}"
        for c, r in zip(clients, results)
        if isinstance(r, BaseException)
    ]
    queries = sum(c.queries for c in clients)
    elapsed = time.monotonic() - began
    if errors:
        for e in errors:
            print("FAILED", e, file=sys.stderr)
        print(f"asyncpg {asyncpg.__version__}: FAILED: {len(errors)} of {len(clients)} clients, {queries} queries")
        return 1
    print(
        f"asyncpg {asyncpg.__version__}: {queries} queries, {len(clients)} clients, "
        f"{len(TENANTS)} tenants, {elapsed:.1f}s: ok"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
