//! The admin console: PgBouncer-style SHOW commands, PAUSE/RESUME.

mod common;
mod support;

use std::time::Duration;

use support::{start, stderr, stdout, Opts, PW};

fn admin_opts() -> Opts {
    Opts {
        extra: format!("[[users]]\nname = \"tgadmin\"\npassword = \"{PW}\"\nkind = \"admin\"\n"),
        ..Opts::default()
    }
}

fn console(p: &support::TestProxy, sql: &str) -> std::process::Output {
    std::process::Command::new(support::psql_bin())
        .args(["-X", "-A", "-F", "|", "-c", sql])
        .arg(format!(
            "host=127.0.0.1 port={} user=tgadmin dbname=tenantgate",
            p.addr.port()
        ))
        .env("PGPASSWORD", PW)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_commands_list_pools_clients_servers_stats_config() {
    let p = start(admin_opts()).await;
    let c = p.connect("acme_app").await;
    c.query_one("select count(*) from customers", &[])
        .await
        .unwrap();
    let out = console(&p, "SHOW POOLS");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("database|user|cl_active|cl_waiting|sv_active|sv_idle"),
        "{text}"
    );
    assert!(text.contains(&format!("{}|app_user|", p.db)), "{text}");
    let text = stdout(&console(&p, "show clients;"));
    assert!(text.contains("acme_app"), "{text}");
    assert!(text.contains(common::ACME.id), "{text}");
    let text = stdout(&console(&p, "SHOW SERVERS"));
    assert!(text.contains("app_user") && text.contains("idle"), "{text}");
    let text = stdout(&console(&p, "SHOW STATS"));
    assert!(text.contains("total_xact_count"), "{text}");
    let text = stdout(&console(&p, "SHOW CONFIG"));
    assert!(text.contains("pool_size|4|1"), "{text}");
    let out = console(&p, "DROP TABLE customers");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown console command"),
        "{}",
        stderr(&out)
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_new_work_until_resume() {
    let p = start(admin_opts()).await;
    let c = p.connect("acme_app").await;
    assert!(console(&p, "PAUSE").status.success());
    let q = tokio::spawn(async move {
        c.query_one("select 5::int", &[])
            .await
            .map(|r| r.get::<_, i32>(0))
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!q.is_finished(), "query ran while paused");
    assert!(
        stdout(&console(&p, "SHOW POOLS")).contains("|transaction|4|1"),
        "pool shows paused"
    );
    assert!(console(&p, "RESUME").status.success());
    let v = tokio::time::timeout(Duration::from_secs(5), q)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(v, 5);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_is_only_for_admins_and_admins_only_for_the_console() {
    let p = start(admin_opts()).await;
    let out = std::process::Command::new(support::psql_bin())
        .args(["-X", "-c", "SHOW POOLS"])
        .arg(format!(
            "host=127.0.0.1 port={} user=acme_app dbname=tenantgate",
            p.addr.port()
        ))
        .env("PGPASSWORD", PW)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let out = p.psql("tgadmin", &["-c", "select 1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("console database"),
        "{}",
        stderr(&out)
    );
    p.stop().await;
}
