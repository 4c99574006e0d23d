//! The admin HTTP listener (`[server] admin_listen`): health and Prometheus metrics.
//!
//! Off unless configured, and it answers only four GET paths:
//! - `/health/live`: the process is up (always 200);
//! - `/health/ready`: 200 once the upstream role is verified, while the posture passes (or
//!   `serve_unprotected`) and while not draining, else 503 with the reason;
//! - `/health/tenant-security`: the RLS posture from the last check (200 healthy, 503 not);
//! - `/metrics`: Prometheus text from `metrics-exporter-prometheus`.
//!
//! It reads state, never changes it, and never runs a query per request: the posture document
//! is the drift monitor's latest result, so a scraper cannot load the database.

pub mod console;
pub mod health;
pub mod tenants;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::events::ALL_KINDS;
use crate::shared::Shared;
use health::{Context, PoolView};

/// Most admin requests served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 32;

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Binding failed.
    #[error("cannot listen on {addr} for admin HTTP: {source}")]
    Bind {
        /// The configured `admin_listen`.
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds `addr` and serves until `stop` is cancelled; returns the bound address (port 0 works).
pub async fn start(
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Result<SocketAddr, AdminError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| AdminError::Bind { addr, source })?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "admin HTTP listens on a non-loopback address: it shows schema and pool details; restrict access to it");
    }
    let metrics = crate::metrics::install();
    if let Some(h) = metrics.clone() {
        // Histograms buffer samples until drained; drain them even when nobody scrapes.
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => h.run_upkeep(),
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    tokio::spawn(serve(listener, shared, metrics, stop));
    tracing::info!(%bound, "admin HTTP listening");
    Ok(bound)
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    metrics: Option<PrometheusHandle>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p,
            _ = stop.cancelled() => return,
        };
        let Ok(permit) = permit else {
            return;
        };
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let shared = shared.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(route(&req, &shared, metrics.as_ref())) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let conn = http.serve_connection(TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            drop(permit);
        });
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    respond(status, "application/json", body)
}

fn code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Answers one request; every path is read-only.
fn route(
    req: &Request<Incoming>,
    shared: &Shared,
    metrics: Option<&PrometheusHandle>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    match req.uri().path() {
        "/health/live" => json(StatusCode::OK, &serde_json::json!({ "status": "live" })),
        "/health/ready" => {
            let (ready, why) = readiness(shared);
            json(
                code(ready),
                &serde_json::json!({ "status": if ready { "ready" } else { "not_ready" }, "reason": why }),
            )
        }
        "/health/tenant-security" => {
            let snap = shared.posture.snapshot();
            let ctx = context(shared);
            let doc = health::tenant_security(&snap, &ctx);
            json(code(doc.status == "healthy"), &doc)
        }
        "/metrics" => match metrics {
            Some(h) => {
                refresh_gauges(shared);
                let mut body = h.render();
                body.push_str(&tenants::prometheus(shared));
                respond(StatusCode::OK, "text/plain; version=0.0.4", body)
            }
            None => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "metrics recorder unavailable\n",
            ),
        },
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

fn readiness(shared: &Shared) -> (bool, Option<String>) {
    if let Some(why) = shared.posture.refusal() {
        return (false, Some(why));
    }
    if shared.shutdown.is_cancelled() {
        return (false, Some("draining".into()));
    }
    if !shared.posture.verified.is_cancelled() {
        if let Some(why) = shared.posture.rejected() {
            return (
                false,
                Some(format!("the upstream server rejected tenantgate's login ({why}); this is not transient: fix the [upstream] credentials")),
            );
        }
        let why = match shared.posture.snapshot().error {
            Some(e) => format!("the upstream role has not been verified yet: {e}"),
            None => "the upstream role has not been verified yet".into(),
        };
        return (false, Some(why));
    }
    if let Some(why) = shared.posture.gate() {
        return (false, Some(why));
    }
    (true, None)
}

fn pools(shared: &Shared) -> Vec<PoolView> {
    std::iter::once(&shared.pool)
        .chain(shared.breakglass.iter())
        .map(|p| PoolView {
            name: p.name.as_str(),
            size: p.size(),
            active: p.stats.active.load(Ordering::Relaxed),
            idle: p.idle_count(),
            waiting: p.stats.waiting.load(Ordering::Relaxed),
        })
        .collect()
}

fn context(shared: &Shared) -> Context<'_> {
    let c = &shared.config;
    Context {
        upstream_user: &c.upstream.user,
        upstream_database: &c.upstream.database,
        interval_seconds: c.security.drift_check_interval,
        on_drift: match c.security.on_drift {
            crate::config::OnDrift::Warn => "warn",
            crate::config::OnDrift::Refuse => "refuse",
        },
        signed: c.tenant.signing_key_file.is_some(),
        pools: pools(shared),
    }
}

/// Copies the counters other modules keep into the scrape.
fn refresh_gauges(shared: &Shared) {
    for p in pools(shared) {
        crate::metrics::server_connections(p.name, p.active, p.idle, p.waiting);
    }
    let (mut xacts, mut queries) = (0, 0);
    for p in std::iter::once(&shared.pool).chain(shared.breakglass.iter()) {
        xacts += p.stats.xacts.load(Ordering::Relaxed);
        queries += p.stats.queries.load(Ordering::Relaxed);
    }
    crate::metrics::pool_totals(xacts, queries);
    for kind in ALL_KINDS {
        let n = shared.events.counts.0[kind as usize].load(Ordering::Relaxed);
        crate::metrics::security_events(kind.as_str(), n);
    }
    crate::metrics::security_events_dropped(shared.events.dropped_total.load(Ordering::Relaxed));
}
