#!/usr/bin/env python3
"""psycopg 3 through tenantgate (transaction pooling): run by tests/drivers.rs.

Exercises, from several concurrent clients over at least two tenants:
  * prepare_threshold=0: every statement is a named server-side prepared statement from its
    first use, so the proxy must re-prepare it on whichever upstream a transaction lands on;
  * pipeline mode: several queries (and mid-pipeline syncs) in one round trip;
  * COPY TO and COPY FROM (cursor.copy), the latter rolled back;
  * a named server-side cursor (DECLARE/FETCH) inside a transaction, read with fetchmany;
  * explicit transactions (conn.transaction()) and psycopg's implicit BEGIN (autocommit off).
After every query it checks that what came back belongs to the client's own tenant.

Environment:
  TG_HOST, TG_PORT, TG_DB, TG_PASSWORD   where the proxy is
  TG_TENANTS   JSON list of {"user", "id", "slug", "customers", "vehicles", "services",
               "appointments"}
  TG_CLIENTS_PER_TENANT (default 2), TG_ROUNDS (default 20)
Exit status 0 when every check held; otherwise what was seen is printed and it exits 1.
"""

import json
import os
import sys
import threading
import time
import traceback

import psycopg

HOST = os.environ.get("TG_HOST", "127.0.0.1")
PORT = int(os.environ["TG_PORT"])
DB = os.environ["TG_DB"]
PASSWORD = os.environ["TG_PASSWORD"]
TENANTS = json.loads(os.environ["TG_TENANTS"])
CLIENTS_PER_TENANT = int(os.environ.get("TG_CLIENTS_PER_TENANT", "2"))
ROUNDS = int(os.environ.get("TG_ROUNDS", "20"))


class Mismatch(Exception):
    """A row or a setting that is not the client's own tenant's."""


class Client:
    def __init__(self, tenant, no):
        self.t = tenant
        self.no = no
        self.queries = 0
        self.label = f"{tenant['slug']}#{no} ({tenant['user']})"

    # --- checks ---------------------------------------------------------------------------
    def fail(self, what, seen):
        raise Mismatch(f"{self.label}: {what}: saw {seen!r}")

    def names(self, rows, col=0):
        for r in rows:
            if not str(r[col]).startswith(self.t["slug"]):
                self.fail(f"row not of tenant {self.t['slug']}", r)
        return rows

    def setting(self, value):
        if value != self.t["id"]:
            self.fail(f"app.tenant_id is not {self.t['id']}", value)

    def count(self, table, value, extra=0):
        want = self.t[table] + extra
        if value != want:
            self.fail(f"count({table}) expected {want}", value)

    def server_statements(self, cur):
        """On the upstream this transaction runs on, the statements just used exist under the
        proxy's names (`__tg_...`) and psycopg's own names (`_pg3_N`) never arrived."""
        rows = self.q(cur, "select name from pg_prepared_statements").fetchall()
        names = [r[0] for r in rows]
        if not any(n.startswith("__tg_") for n in names) or any(n.startswith("_pg3_") for n in names):
            self.fail("server-side prepared statements", names)

    def q(self, cur, sql, params=None, prepare=None):
        cur.execute(sql, params, prepare=prepare)
        self.queries += 1
        return cur

    # --- the workload ---------------------------------------------------------------------
    def connect(self, autocommit=True):
        return psycopg.connect(
            host=HOST,
            port=PORT,
            dbname=DB,
            user=self.t["user"],
            password=PASSWORD,
            sslmode="disable",
            connect_timeout=10,
            autocommit=autocommit,
            prepare_threshold=0,
        )

    def run(self):
        with self.connect() as conn:
            for rnd in range(ROUNDS):
                self.plain(conn)
                self.explicit_transaction(conn)
                self.pipeline(conn)
                self.copy(conn)
                self.server_cursor(conn)
                if rnd % 2 == 0:
                    self.implicit_transaction()

    def plain(self, conn):
        cur = conn.cursor()
        self.count("customers", self.q(cur, "select count(*) from customers").fetchone()[0])
        self.setting(self.q(cur, "select current_setting('app.tenant_id')").fetchone()[0])
        rows = self.q(
            cur,
            "select name, current_setting('app.tenant_id') from customers where name like %s",
            (self.t["slug"] + "%",),
        ).fetchall()
        self.count("customers", len(rows))
        for name, setting in self.names(rows):
            self.setting(setting)
        other = self.q(
            cur, "select count(*) from customers where name not like %s", (self.t["slug"] + "%",)
        ).fetchone()[0]
        if other != 0:
            self.fail("rows of other tenants visible", other)

    def explicit_transaction(self, conn):
        cur = conn.cursor()
        with conn.transaction():
            self.count("vehicles", self.q(cur, "select count(*) from vehicles").fetchone()[0])
            self.setting(self.q(cur, "select current_setting('app.tenant_id')").fetchone()[0])
            self.count("appointments", self.q(cur, "select count(*) from appointments").fetchone()[0])
            self.server_statements(cur)
        # A write that must be rolled back, with RLS's WITH CHECK in force.
        with conn.transaction(force_rollback=True):
            self.q(
                cur,
                "insert into customers (tenant_id, name)"
                " values (current_setting('app.tenant_id')::uuid, %s)",
                (f"{self.t['slug']} psycopg {self.no}",),
            )
            self.count("customers", self.q(cur, "select count(*) from customers").fetchone()[0], 1)
            self.names(self.q(cur, "select name from customers").fetchall())
        # A failed statement aborts the block; the connection is usable afterwards.
        try:
            with conn.transaction():
                self.q(cur, "select 1 / 0")
        except psycopg.errors.DivisionByZero:
            pass
        else:
            self.fail("division by zero did not fail", None)
        self.setting(self.q(cur, "select current_setting('app.tenant_id')").fetchone()[0])

    def pipeline(self, conn):
        like = self.t["slug"] + "%"
        with conn.pipeline() as p:
            c1 = self.q(conn.cursor(), "select count(*) from customers")
            c2 = self.q(conn.cursor(), "select current_setting('app.tenant_id')")
            c3 = self.q(conn.cursor(), "select name from customers where name like %s", (like,))
            p.sync()
            c4 = self.q(conn.cursor(), "select count(*) from services")
            c5 = self.q(conn.cursor(), "select count(*) from vehicles where tenant_id::text = %s", (self.t["id"],))
            p.sync()
            c6 = self.q(conn.cursor(), "select name, current_setting('app.tenant_id') from customers")
        self.count("customers", c1.fetchone()[0])
        self.setting(c2.fetchone()[0])
        self.count("customers", len(self.names(c3.fetchall())))
        self.count("services", c4.fetchone()[0])
        self.count("vehicles", c5.fetchone()[0])
        rows = self.names(c6.fetchall())
        self.count("customers", len(rows))
        for _, s in rows:
            self.setting(s)
        # A pipeline inside one transaction, executemany included.
        with conn.pipeline(), conn.transaction(force_rollback=True):
            cur = conn.cursor()
            cur.executemany(
                "insert into customers (tenant_id, name) values (current_setting('app.tenant_id')::uuid, %s)",
                [(f"{self.t['slug']} piped {i}",) for i in range(3)],
            )
            self.queries += 3
            c7 = self.q(conn.cursor(), "select count(*) from customers")
            c8 = self.q(conn.cursor(), "select current_setting('app.tenant_id')")
            c9 = self.q(conn.cursor(), "select name from customers")
        self.count("customers", c7.fetchone()[0], 3)
        self.setting(c8.fetchone()[0])
        self.names(c9.fetchall())

    def copy(self, conn):
        cur = conn.cursor()
        rows = []
        with cur.copy("COPY (select name, tenant_id from customers order by id) TO STDOUT") as copy:
            for row in copy.rows():
                rows.append(row)
        self.queries += 1
        self.count("customers", len(self.names(rows)))
        for _, tid in rows:
            self.setting(tid)
        # PostgreSQL refuses COPY FROM into a table with RLS: copy into a temporary table, then
        # move the rows through the policies' WITH CHECK; all rolled back.
        with conn.transaction(force_rollback=True):
            self.q(cur, "create temporary table copied (tenant_id uuid, name text) on commit drop")
            with cur.copy("COPY copied (tenant_id, name) FROM STDIN") as copy:
                for i in range(4):
                    copy.write_row((self.t["id"], f"{self.t['slug']} copied {i}"))
            self.queries += 1
            moved = self.q(cur, "insert into customers (tenant_id, name) select tenant_id, name from copied")
            if moved.rowcount != 4:
                self.fail("rows moved from the COPY", moved.rowcount)
            self.count("customers", self.q(cur, "select count(*) from customers").fetchone()[0], 4)
            self.names(self.q(cur, "select name from customers").fetchall())
            self.setting(self.q(cur, "select current_setting('app.tenant_id')").fetchone()[0])
        self.count("customers", self.q(cur, "select count(*) from customers").fetchone()[0])

    def server_cursor(self, conn):
        with conn.transaction():
            with conn.cursor(name=f"tg_cur_{self.no}") as cur:
                cur.itersize = 2
                cur.execute(
                    "select name, current_setting('app.tenant_id') from customers where id > %s order by id",
                    (0,),
                )
                self.queries += 1
                seen = 0
                while True:
                    batch = cur.fetchmany(2)
                    self.queries += 1
                    if not batch:
                        break
                    for _, s in self.names(batch):
                        self.setting(s)
                    seen += len(batch)
                self.count("customers", seen)
            plain = conn.cursor()
            self.setting(self.q(plain, "select current_setting('app.tenant_id')").fetchone()[0])

    def implicit_transaction(self):
        # psycopg's default: BEGIN is sent before the first statement, until commit().
        with self.connect(autocommit=False) as conn:
            cur = conn.cursor()
            self.count("customers", self.q(cur, "select count(*) from customers").fetchone()[0])
            self.setting(self.q(cur, "select current_setting('app.tenant_id')").fetchone()[0])
            conn.commit()
            self.count("services", self.q(cur, "select count(*) from services").fetchone()[0])
            self.names(self.q(cur, "select name from customers").fetchall())
            conn.rollback()


def main():
    if len({t["id"] for t in TENANTS}) < 2:
        print("need at least two tenants in TG_TENANTS", file=sys.stderr)
        return 2
    began = time.monotonic()
    clients = [Client(t, n) for t in TENANTS for n in range(CLIENTS_PER_TENANT)]
    errors = []

    def work(c):
        try:
            c.run()
        except Exception as e:  # noqa: BLE001 - every failure is reported with its client
            errors.append(f"{c.label}: {type(e).__name__}: {e}\n{traceback.format_exc()}")

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    queries = sum(c.queries for c in clients)
    elapsed = time.monotonic() - began
    if errors:
        for e in errors:
            print("FAILED", e, file=sys.stderr)
        print(f"psycopg {psycopg.__version__}: FAILED: {len(errors)} of {len(clients)} clients, {queries} queries")
        return 1
    print(
        f"psycopg {psycopg.__version__}: {queries} queries, {len(clients)} clients, "
        f"{len(TENANTS)} tenants, {elapsed:.1f}s: ok"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
