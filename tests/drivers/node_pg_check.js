#!/usr/bin/env node
// node-postgres (`pg`) through tenantgate (transaction pooling): run by tests/drivers.rs.
//
// Exercises, from a pg.Pool of several clients per tenant over at least two tenants:
//   * named queries ({name, text, values}): node-postgres parses each name once per client
//     connection and afterwards sends only Bind/Execute, so the proxy must re-prepare them on
//     whichever upstream a later transaction lands on; reused many times across transactions;
//   * explicit transactions (BEGIN/COMMIT/ROLLBACK), an error inside one, writes rolled back;
//   * pool.query() (a client checked out per query) next to long-held pool clients.
// After every query it checks that what came back belongs to the client's own tenant.
//
// Environment:
//   TG_HOST, TG_PORT, TG_DB, TG_PASSWORD   where the proxy is
//   TG_TENANTS   JSON list of {"user", "id", "slug", "customers", "vehicles", "services",
//                "appointments"}
//   TG_CLIENTS_PER_TENANT (default 2), TG_ROUNDS (default 25)
// Exit status 0 when every check held; otherwise what was seen is printed and it exits 1.
'use strict';

const pg = require('pg');

const HOST = process.env.TG_HOST || '127.0.0.1';
const PORT = Number(process.env.TG_PORT);
const DB = process.env.TG_DB;
const PASSWORD = process.env.TG_PASSWORD;
const TENANTS = JSON.parse(process.env.TG_TENANTS);
const CLIENTS_PER_TENANT = Number(process.env.TG_CLIENTS_PER_TENANT || '2');
const ROUNDS = Number(process.env.TG_ROUNDS || '25');

class Mismatch extends Error {}

// The named statements every client shares; each name always carries the same text.
const Q = {
  count: { name: 'tg_count_customers', text: 'select count(*)::int as n from customers' },
  setting: { name: 'tg_setting', text: "select current_setting('app.tenant_id') as s" },
  names: {
    name: 'tg_names_like',
    text: "select name, current_setting('app.tenant_id') as s from customers where name like $1",
  },
  vehicles: { name: 'tg_count_vehicles', text: 'select count(*)::int as n from vehicles' },
  insert: {
    name: 'tg_insert_customer',
    text: "insert into customers (tenant_id, name) values (current_setting('app.tenant_id')::uuid, $1)",
  },
  statements: { name: 'tg_server_statements', text: 'select name from pg_prepared_statements' },
};

class Worker {
  constructor(pool, tenant, no) {
    this.pool = pool;
    this.t = tenant;
    this.no = no;
    this.queries = 0;
    this.label = `${tenant.slug}#${no} (${tenant.user})`;
  }

  fail(what, seen) {
    throw new Mismatch(`${this.label}: ${what}: saw ${JSON.stringify(seen)}`);
  }

  names(rows) {
    for (const r of rows) {
      if (!String(r.name).startsWith(this.t.slug)) this.fail(`row not of tenant ${this.t.slug}`, r);
    }
    return rows;
  }

  setting(v) {
    if (v !== this.t.id) this.fail(`app.tenant_id is not ${this.t.id}`, v);
  }

  count(table, v, extra = 0) {
    const want = this.t[table] + extra;
    if (v !== want) this.fail(`count(${table}) expected ${want}`, v);
  }

  async q(client, query, values) {
    this.queries += 1;
    const res = await client.query(values ? { ...query, values } : query);
    return res.rows;
  }

  async run() {
    for (let rnd = 0; rnd < ROUNDS; rnd++) {
      const client = await this.pool.connect();
      try {
        await this.transaction(client, rnd);
        await this.outside(client);
      } finally {
        client.release();
      }
      await this.pooled();
    }
  }

  async transaction(client, rnd) {
    await client.query('BEGIN');
    this.queries += 1;
    this.count('customers', (await this.q(client, Q.count))[0].n);
    this.setting((await this.q(client, Q.setting))[0].s);
    const rows = this.names(await this.q(client, Q.names, [`${this.t.slug}%`]));
    this.count('customers', rows.length);
    for (const r of rows) this.setting(r.s);
    const stmts = (await this.q(client, Q.statements)).map((r) => r.name);
    if (!stmts.some((n) => n.startsWith('__tg_')) || stmts.some((n) => n.startsWith('tg_'))) {
      this.fail('server-side prepared statements', stmts);
    }
    switch (rnd % 3) {
      case 0:
        await client.query('COMMIT');
        break;
      case 1:
        await this.q(client, Q.insert, [`${this.t.slug} node ${this.no}`]);
        this.count('customers', (await this.q(client, Q.count))[0].n, 1);
        await client.query('ROLLBACK');
        break;
      default: {
        let failed = false;
        try {
          await client.query('select 1 / 0');
        } catch (e) {
          failed = e.code === '22012';
        }
        if (!failed) this.fail('1/0 did not fail with 22012', null);
        // The block is aborted until ROLLBACK, as PostgreSQL says.
        try {
          await this.q(client, Q.count);
          this.fail('query in an aborted transaction succeeded', null);
        } catch (e) {
          if (e instanceof Mismatch) throw e;
          if (e.code !== '25P02') this.fail('error in aborted transaction', e.code);
        }
        await client.query('ROLLBACK');
      }
    }
    this.queries += 1;
  }

  async outside(client) {
    this.count('vehicles', (await this.q(client, Q.vehicles))[0].n);
    this.count('customers', (await this.q(client, Q.count))[0].n);
    this.setting((await this.q(client, Q.setting))[0].s);
  }

  async pooled() {
    // Whichever pool client it gets: named queries are per pg client, so this mixes clients
    // that have and have not parsed them yet.
    const rows = this.names(await this.q(this.pool, Q.names, [`${this.t.slug}%`]));
    this.count('customers', rows.length);
    for (const r of rows) this.setting(r.s);
    const other = await this.q(this.pool, {
      name: 'tg_others',
      text: 'select count(*)::int as n from customers where name not like $1',
      values: [`${this.t.slug}%`],
    });
    if (other[0].n !== 0) this.fail('rows of other tenants visible', other[0].n);
  }
}

async function main() {
  if (new Set(TENANTS.map((t) => t.id)).size < 2) {
    console.error('need at least two tenants in TG_TENANTS');
    return 2;
  }
  const began = Date.now();
  const pools = [];
  const workers = [];
  for (const t of TENANTS) {
    // More workers than pool clients, so clients are shared and reused between workers.
    const pool = new pg.Pool({
      host: HOST,
      port: PORT,
      database: DB,
      user: t.user,
      password: PASSWORD,
      ssl: false,
      max: CLIENTS_PER_TENANT,
      connectionTimeoutMillis: 20000,
    });
    pool.on('error', (e) => console.error(`pool error (${t.user}): ${e.message}`));
    pools.push(pool);
    for (let n = 0; n < CLIENTS_PER_TENANT + 1; n++) workers.push(new Worker(pool, t, n));
  }
  const results = await Promise.allSettled(workers.map((w) => w.run()));
  await Promise.all(pools.map((p) => p.end()));
  const queries = workers.reduce((a, w) => a + w.queries, 0);
  const clients = TENANTS.length * CLIENTS_PER_TENANT;
  const errors = results
    .map((r, i) => (r.status === 'rejected' ? `${workers[i].label}: ${r.reason && r.reason.stack}` : null))
    .filter((e) => e);
  const version = require('pg/package.json').version;
  if (errors.length) {
    for (const e of errors) console.error('FAILED', e);
    console.log(`node-postgres ${version}: FAILED: ${errors.length} of ${workers.length} workers, ${queries} queries`);
    return 1;
  }
  console.log(
    `node-postgres ${version}: ${queries} queries, ${clients} clients (${workers.length} workers), ` +
      `${TENANTS.length} tenants, ${((Date.now() - began) / 1000).toFixed(1)}s: ok`,
  );
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error('FAILED', e && e.stack);
    process.exit(1);
  },
);
