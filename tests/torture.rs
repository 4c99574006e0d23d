//! Leak torture: ≥ 4 tenants × many clients over a tiny pool, a random mix of simple,
//! extended and prepared traffic, explicit transactions, errors inside transactions, pipelined
//! queries, cancels, and clients dropped mid-transaction. Every returned row is checked
//! against the client's tenant.
//!
//! Bounded (~40 s) in `cargo test`; `TENANTGATE_SOAK_SECS=600 cargo test --test torture -- --nocapture`
//! runs the soak whose figures are in docs/soak.md.

mod common;
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{count, expect_sqlstate, sqlstate, try_count, SeedTenant};
use support::{start, Opts};

#[derive(Default)]
struct Tally {
    queries: AtomicU64,
    rows_checked: AtomicU64,
    cancels: AtomicU64,
    cancelled: AtomicU64,
    drops: AtomicU64,
    expected_errors: AtomicU64,
    leaks: AtomicU64,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn check_names(t: &SeedTenant, names: impl IntoIterator<Item = String>, tally: &Tally) {
    for n in names {
        tally.rows_checked.fetch_add(1, Ordering::Relaxed);
        if !n.starts_with(t.slug) {
            tally.leaks.fetch_add(1, Ordering::Relaxed);
            eprintln!("LEAK: {} saw {n}", t.slug);
        }
    }
}

async fn client_loop(
    p: Arc<support::TestProxy>,
    t: SeedTenant,
    seed: u64,
    until: Instant,
    tally: Arc<Tally>,
) {
    let mut rng = Rng(seed | 1);
    let user = if seed % 3 == 0 {
        format!("shared_app.{}", t.id)
    } else {
        format!("{}_app", t.slug)
    };
    let mut c = p.connect(&user).await;
    let mut stmt = c
        .prepare("select name from customers where id > $1")
        .await
        .unwrap();
    while Instant::now() < until {
        tally.queries.fetch_add(1, Ordering::Relaxed);
        match rng.below(8) {
            0 => {
                let rows = c
                    .simple_query("select name, current_setting('app.tenant_id') from customers")
                    .await
                    .unwrap();
                for m in rows {
                    if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                        check_names(&t, [r.get(0).unwrap_or("").to_owned()], &tally);
                        if r.get(1) != Some(t.id) {
                            tally.leaks.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            1 => {
                let rows = c.query(&stmt, &[&0i64]).await.unwrap();
                check_names(&t, rows.iter().map(|r| r.get::<_, String>(0)), &tally);
            }
            2 => {
                let rows = c
                    .query(
                        "select name from vehicles v join customers c on c.id = v.customer_id",
                        &[],
                    )
                    .await
                    .unwrap();
                check_names(&t, rows.iter().map(|r| r.get::<_, String>(0)), &tally);
            }
            3 => {
                let tx = c.transaction().await.unwrap();
                let n = count(&tx, "appointments").await;
                let s: String = tx
                    .query_one("select current_setting('app.tenant_id')", &[])
                    .await
                    .unwrap()
                    .get(0);
                if n != t.appointments || s != t.id {
                    tally.leaks.fetch_add(1, Ordering::Relaxed);
                }
                if rng.below(2) == 0 {
                    assert!(tx.simple_query("select 1/0").await.is_err());
                    tally.expected_errors.fetch_add(1, Ordering::Relaxed);
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                }
            }
            4 => {
                // Pipelined: tokio-postgres sends these without waiting.
                let (a, b, d) = tokio::join!(
                    c.query(&stmt, &[&0i64]),
                    try_count(&c, "customers"),
                    c.query_one("select current_setting('app.tenant_id')", &[])
                );
                check_names(&t, a.unwrap().iter().map(|r| r.get::<_, String>(0)), &tally);
                if b.unwrap() != t.customers || d.unwrap().get::<_, String>(0) != t.id {
                    tally.leaks.fetch_add(1, Ordering::Relaxed);
                }
            }
            5 => {
                tally.cancels.fetch_add(1, Ordering::Relaxed);
                let token = c.cancel_token();
                let delay = rng.below(120);
                let canceller = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let _ = token.cancel_query(tokio_postgres::NoTls).await;
                });
                match c.simple_query("select pg_sleep(0.1)").await {
                    Ok(_) => {}
                    Err(e) if sqlstate(&e) == Some("57014") => {
                        tally.cancelled.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("{user}: unexpected error after cancel: {e}"),
                }
                let _ = canceller.await;
                // tokio-postgres does not wait for a cancel to be processed; as with PostgreSQL
                // itself, a late cancel may hit the next query. Let it land first.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            6 => {
                // Dropped mid-transaction, then a fresh session.
                tally.drops.fetch_add(1, Ordering::Relaxed);
                c.batch_execute("begin; select count(*) from customers")
                    .await
                    .unwrap();
                drop(c);
                c = p.connect(&user).await;
                stmt = c
                    .prepare("select name from customers where id > $1")
                    .await
                    .unwrap();
            }
            _ => {
                expect_sqlstate(c.simple_query("set role postgres").await, "42501");
                tally.expected_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // Statements prepared before moving across servers still work at the end.
    let rows = c.query(&stmt, &[&0i64]).await.unwrap();
    check_names(&t, rows.iter().map(|r| r.get::<_, String>(0)), &tally);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_torture() {
    let secs: u64 = std::env::var("TENANTGATE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let clients_per_tenant: u64 = if secs > 60 { 6 } else { 4 };
    let p = Arc::new(
        start(Opts {
            pool_size: 2,
            ..Opts::default()
        })
        .await,
    );
    let tally = Arc::new(Tally::default());
    let until = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let watcher = support::BackendWatcher::start(&p);
    let mut tasks = Vec::new();
    for (i, t) in common::TENANTS.into_iter().enumerate() {
        for k in 0..clients_per_tenant {
            let seed = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i as u64 * 31 + k + 1);
            tasks.push(tokio::spawn(client_loop(
                p.clone(),
                t,
                seed,
                until,
                tally.clone(),
            )));
        }
    }
    for task in tasks {
        task.await.expect("client task");
    }
    let max_backends = watcher.stop();
    p.released().await;
    let idle_in_txn = p.backends(Some("idle in transaction"));
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "torture: {}s, {} clients over pool_size 2: {} operations, {} rows checked, {} cancels sent ({} took effect), {} clients dropped mid-transaction, {} expected errors, {} leaks, max {} upstream backends, {} idle in transaction",
        started.elapsed().as_secs(),
        4 * clients_per_tenant,
        get(&tally.queries),
        get(&tally.rows_checked),
        get(&tally.cancels),
        get(&tally.cancelled),
        get(&tally.drops),
        get(&tally.expected_errors),
        get(&tally.leaks),
        max_backends,
        idle_in_txn
    );
    assert_eq!(
        get(&tally.leaks),
        0,
        "rows or context of another tenant were seen"
    );
    assert!(get(&tally.rows_checked) > 1000);
    assert!(
        max_backends <= 2,
        "saw {max_backends} upstream backends with pool_size = 2"
    );
    assert_eq!(idle_in_txn, 0);
}
