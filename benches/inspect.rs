//! Cost of the SQL inspector (`tenant::inspect`) on a realistic corpus.
//!
//! Every client statement goes through `inspect` before it is forwarded, so this is on the data
//! path. Throughput is reported in statements: criterion's `thrpt` line reads as statements per
//! second, and `time` is the cost of one call (one Query text). The target is at most 200 ns for
//! a short OLTP statement.
//!
//! Run with `cargo bench --bench inspect`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tenantgate::tenant::inspect::{inspect, InspectOptions};

const OPTS: InspectOptions<'static> = InspectOptions {
    setting: "app.tenant_id",
    tenant_column: "tenant_id",
    standard_conforming_strings: true,
};

const SHORT_SELECT: &str = "SELECT * FROM customers WHERE id = $1";

const ORM_SELECT: &str =
    "SELECT \"customers\".\"id\", \"customers\".\"name\", \"customers\".\"email\" \
     FROM \"public\".\"customers\" WHERE \"customers\".\"id\" = $1 LIMIT $2";

const INSERT: &str = "INSERT INTO orders (customer_id, status, total_cents, note, created_at) \
     VALUES ($1, 'pending', $2, 'gift wrap, leave at door', now()) RETURNING id";

const MULTI: &str = "BEGIN; \
     UPDATE accounts SET balance = balance - 100 WHERE id = 1; \
     UPDATE accounts SET balance = balance + 100 WHERE id = 2; \
     INSERT INTO transfers (src, dst, amount) VALUES (1, 2, 100); \
     COMMIT;";

const FUNCTION: &str = r#"CREATE OR REPLACE FUNCTION refresh_customer_stats(p_customer bigint)
RETURNS void
LANGUAGE plpgsql
AS $body$
DECLARE
    v_total bigint;
    v_count integer;
BEGIN
    -- Totals over the last year; the tenant comes from the session.
    SELECT coalesce(sum(o.total_cents), 0), count(*)
      INTO v_total, v_count
      FROM orders o
     WHERE o.customer_id = p_customer
       AND o.created_at > now() - interval '1 year'
       AND o.status <> 'cancelled';
    INSERT INTO customer_stats (customer_id, total_cents, order_count, refreshed_at)
    VALUES (p_customer, v_total, v_count, now())
    ON CONFLICT (customer_id) DO UPDATE
       SET total_cents = excluded.total_cents,
           order_count = excluded.order_count,
           refreshed_at = excluded.refreshed_at;
    RAISE NOTICE 'refreshed % (% orders)', p_customer, v_count;
END
$body$"#;

const TAMPER: &str = "SET app.tenant_id = '22222222-2222-2222-2222-222222222222'";

/// A ~2 KB reporting query: CTEs, joins, window functions, comments and literals.
fn report_query() -> String {
    let sql = r#"
-- Monthly revenue report by region and product category.
WITH monthly AS (
    SELECT date_trunc('month', o.created_at) AS month,
           c.region,
           p.category,
           sum(oi.quantity * oi.unit_price_cents) AS revenue_cents,
           count(DISTINCT o.id) AS orders,
           count(DISTINCT o.customer_id) AS customers
      FROM orders o
      JOIN order_items oi ON oi.order_id = o.id
      JOIN products p ON p.id = oi.product_id
      JOIN customers c ON c.id = o.customer_id
     WHERE o.created_at >= $1::timestamptz
       AND o.created_at < $2::timestamptz
       AND o.status IN ('paid', 'shipped', 'delivered')
       AND p.category <> 'internal'
     GROUP BY 1, 2, 3
),
ranked AS (
    SELECT m.*,
           rank() OVER (PARTITION BY m.month, m.region ORDER BY m.revenue_cents DESC) AS rnk,
           sum(m.revenue_cents) OVER (PARTITION BY m.month) AS month_total_cents,
           lag(m.revenue_cents) OVER (PARTITION BY m.region, m.category ORDER BY m.month)
               AS prev_revenue_cents
      FROM monthly m
),
targets AS (
    SELECT t.region, t.category, t.month, t.target_cents
      FROM sales_targets t
     WHERE t.month BETWEEN $1::date AND $2::date
)
SELECT r.month,
       r.region,
       r.category,
       r.revenue_cents / 100.0 AS revenue,
       r.orders,
       r.customers,
       round(100.0 * r.revenue_cents / nullif(r.month_total_cents, 0), 2) AS share_pct,
       CASE
           WHEN r.prev_revenue_cents IS NULL THEN 'new'
           WHEN r.revenue_cents > r.prev_revenue_cents THEN 'up'
           WHEN r.revenue_cents < r.prev_revenue_cents THEN 'down'
           ELSE 'flat'
       END AS trend,
       coalesce(t.target_cents, 0) / 100.0 AS target,
       /* attainment is null when there is no target */
       round(100.0 * r.revenue_cents / nullif(t.target_cents, 0), 1) AS attainment_pct
  FROM ranked r
  LEFT JOIN targets t
    ON t.region = r.region AND t.category = r.category AND t.month = r.month
 WHERE r.rnk <= 10
 ORDER BY r.month DESC, r.region, r.rnk
 LIMIT 500"#;
    sql.to_owned()
}

fn corpus() -> Vec<(&'static str, String)> {
    vec![
        ("short_select", SHORT_SELECT.to_owned()),
        ("orm_select", ORM_SELECT.to_owned()),
        ("insert", INSERT.to_owned()),
        ("report_2kb", report_query()),
        ("multi_statement", MULTI.to_owned()),
        ("function_body", FUNCTION.to_owned()),
        ("set_tenant_tamper", TAMPER.to_owned()),
    ]
}

fn bench_inspect(c: &mut Criterion) {
    let mut group = c.benchmark_group("inspect");
    for (name, sql) in corpus() {
        let first = inspect(&sql, &OPTS);
        let statements = u64::from(first.statements.max(1));
        eprintln!(
            "{name}: {} bytes, {statements} statement(s), {} finding(s)",
            sql.len(),
            first.findings.len()
        );
        group.throughput(Throughput::Elements(statements));
        group.bench_function(name, |b| {
            b.iter(|| inspect(black_box(&sql), black_box(&OPTS)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_inspect);
criterion_main!(benches);
