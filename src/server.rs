//! Start-up, the accept loop and shutdown: [`Proxy`] builds the state sessions share
//! ([`crate::shared`]), starts the background tasks and accepts.
//!
//! Connections are capped before they are served (`max_client_conn`, STYLE habit 2): beyond
//! the cap a client gets PostgreSQL's `53300 sorry, too many clients already`. Accept errors
//! back off instead of spinning. Sessions are tracked so SIGTERM can drain them.
//!
//! Before accepting, the upstream role's RLS posture is checked (`verify::monitor`): a role that
//! bypasses RLS or can create code stops the start unless overridden; when the upstream cannot
//! be checked yet, the accept loop waits until it has been; while the posture fails, every new
//! session is refused (the gate). The admin listener and drift monitor start here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client;
use crate::config::{secs, Config};
use crate::events::EventSink;
use crate::listener::{Accepted, Listener, Peer};
use crate::pool::{Pool, PoolLimits, PoolName, UpstreamSpec};
use crate::protocol::stream::BoxStream;
use crate::shared::cancel::CancelRegistry;
use crate::shared::{Live, Shared};
use crate::tenant::directory::Directory;
use crate::verify::monitor::{Monitor, PostureState, Refused, Startup};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding the listener failed.
    #[error("cannot listen on {addr} (server.listen): {source}")]
    Bind {
        /// The address or socket path.
        addr: String,
        /// In the message and as `source()` (`cli::render_error` prints it once).
        source: std::io::Error,
    },
    /// TLS material is unusable.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The event log cannot be opened.
    #[error("cannot open the event log {path} (security.event_log): {source}")]
    EventLog {
        /// As configured in `[security] event_log`.
        path: String,
        /// In the message and as `source()` (`cli::render_error` prints it once).
        source: std::io::Error,
    },
    /// A configured verifier is invalid.
    #[error("{0}")]
    Auth(#[from] crate::auth::VerifierError),
    /// The upstream role can bypass RLS or create code, and no override is set.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The posture checks cannot be set up (upstream TLS settings).
    #[error("posture checks: {0}")]
    Posture(#[from] crate::verify::VerifyError),
    /// The admin HTTP listener cannot start.
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
}

/// A running proxy. Dropping it stops nothing: call [`Proxy::shutdown`].
pub struct Proxy {
    /// The TCP address clients connect to (useful with port 0); `0.0.0.0:0` when listening on
    /// a Unix socket (`[server] listen`, a path). Read by the demo and the tests; the binary
    /// only logs it.
    #[cfg_attr(not(any(feature = "demo", feature = "internals")), allow(dead_code))]
    pub addr: SocketAddr,
    /// Shared state (pools, events) for inspection and the admin endpoints.
    pub shared: Arc<Shared>,
    /// Where the admin HTTP listener is bound, when `admin_listen` is configured.
    #[cfg_attr(not(any(feature = "demo", feature = "internals")), allow(dead_code))]
    pub admin_addr: Option<SocketAddr>,
    /// Stops the admin listener once draining is over.
    admin_stop: CancellationToken,
    /// Aborted first at shutdown, so no session starts while the others drain.
    task: tokio::task::JoinHandle<()>,
    /// Every session's task, so that shutdown can wait for them to end.
    tracker: TaskTracker,
}

impl Proxy {
    /// Builds the shared state, binds the listener and starts accepting.
    pub async fn start(config: Arc<Config>) -> Result<Proxy, StartError> {
        if config.server.admin_listen.is_some() {
            // Before the first posture check, so its result is counted.
            let _ = crate::metrics::install();
        }
        let shared = Arc::new(build_shared(config.clone()).await?);
        let mut monitor = Monitor::new(
            &config,
            shared.posture.clone(),
            shared.events.clone(),
            shared.shutdown.clone(),
        )?;
        if config.tenant.signing_key_file.is_some() {
            let live = Arc::downgrade(&shared);
            monitor.signing_key = Some(Arc::new(move || {
                let shared = live.upgrade()?;
                let l = shared.live();
                let keys = l.config.tenant.resolved_signing_keys.as_deref()?;
                Some(keys.current().clone())
            }));
        }
        match monitor.startup().await {
            Ok(Startup::Verified) => {}
            Ok(Startup::Deferred(e)) => match crate::verify::connect::rejected(&e) {
                Some(why) => tracing::error!(
                    user = %config.upstream.user,
                    "the upstream server rejected tenantgate's login: {why}; this is not transient: fix [upstream] user/password/password_env/database (or the server's pg_hba.conf); clients are refused with 08004 until then"
                ),
                None => {
                    tracing::warn!(error = %e, "cannot check the upstream role yet; clients wait until it is verified")
                }
            },
            Err(p) => {
                monitor.refused_at_start(&p);
                return Err(p.into());
            }
        }
        let bind_error = |source| StartError::Bind {
            addr: config.server.listen.to_string(),
            source,
        };
        let listener = Listener::bind(&config.server.listen, config.server.unix_socket_mode)
            .await
            .map_err(bind_error)?;
        let addr = listener
            .tcp_addr()
            .map_err(bind_error)?
            .unwrap_or_else(|| Peer::Local.socket_addr());
        let admin_stop = CancellationToken::new();
        let admin_addr = match config.server.admin_listen {
            Some(a) => Some(crate::admin::start(a, shared.clone(), admin_stop.clone()).await?),
            None => None,
        };
        tokio::spawn(monitor.run());
        let tracker = TaskTracker::new();
        tokio::spawn(warm_up(shared.pool.clone(), shared.shutdown.clone()));
        tokio::spawn(reaper(shared.clone()));
        if config.upstream.min_pool_size > 0 {
            tokio::spawn(keep_warm(shared.pool.clone(), shared.shutdown.clone()));
        }
        let task = tokio::spawn(accept_loop(listener, shared.clone(), tracker.clone()));
        tracing::info!(listen = %config.server.listen, %addr, upstream = %format!("{}:{}", config.upstream.host, config.upstream.port), mode = ?config.upstream.pool_mode, "tenantgate listening");
        Ok(Proxy {
            addr,
            shared,
            admin_addr,
            admin_stop,
            task,
            tracker,
        })
    }

    /// Stops accepting, lets sessions finish their transactions for up to `grace`, then
    /// returns (remaining sessions end when the runtime does).
    pub async fn shutdown(self, grace: Duration) {
        self.shared.shutdown.cancel();
        self.task.abort();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.tracker.len(),
                "shutdown timeout reached; closing remaining sessions"
            );
        }
        crate::listener::remove_socket_file(&self.shared.config.server.listen);
        self.shared.pool.clear_idle();
        if let Some(bg) = &self.shared.breakglass {
            bg.clear_idle();
        }
        self.admin_stop.cancel();
        // Last: the writer finishes what sessions recorded while draining.
        self.shared.events.close(Duration::from_secs(5)).await;
    }
}

/// The state sessions share, built from `config`, without the listener, the posture check or
/// any background task: the first step of [`Proxy::start`], and half of the seam of the fast
/// test layer (`tests/fast/`), whose scripted upstream cannot answer the posture queries.
pub async fn build_shared(config: Arc<Config>) -> Result<Shared, StartError> {
    let u = &config.upstream;
    let upstream_tls = crate::tls::upstream_config(u.tls, u.tls_ca.as_deref())?;
    let spec = UpstreamSpec {
        host: u.host.clone(),
        port: u.port,
        database: u.database.clone(),
        user: u.user.clone(),
        password: u.resolved_password.clone(),
        tls: upstream_tls.clone(),
        connect_timeout: secs(u.connect_timeout),
        max_message: usize::MAX / 2,
    };
    let limits = |size, tenant_cap, sizing| PoolLimits {
        size,
        tenant_cap,
        timeout: secs(u.pool_timeout),
        idle_timeout: secs(u.idle_timeout),
        lifetime: secs(u.server_lifetime),
        sizing,
    };
    let database = crate::pool::limits::Database::new(0);
    database.configure(
        u.max_db_connections,
        crate::pool::limits::user_caps(&config),
    );
    let pool = Pool::new(
        PoolName::App,
        spec.clone(),
        limits(
            u.pool_size,
            config.tenant.max_server_connections,
            crate::pool::Sizing {
                min: u.min_pool_size,
                reserve: u.reserve_pool_size,
                reserve_timeout: secs(u.reserve_pool_timeout),
            },
        ),
        &database,
    );
    let breakglass = u.breakglass.as_ref().map(|bg| {
        Pool::new(
            PoolName::Breakglass,
            UpstreamSpec {
                user: bg.user.clone(),
                password: bg.resolved_password.clone(),
                ..spec.clone()
            },
            limits(bg.pool_size, None, crate::pool::Sizing::default()),
            &database,
        )
    });
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(c), Some(k)) => Some(client::handshake::acceptor(crate::tls::server_config(
            c, k,
        )?)),
        _ => None,
    };
    let events = EventSink::start(
        &config.security.event_log,
        crate::events::Limits::from(&config.security),
    )
    .map_err(|source| StartError::EventLog {
        path: config.security.event_log.clone(),
        source,
    })?;
    let live = Live::build(config.clone()).await?;
    let t = &config.tenant;
    let directory = t
        .directory_query
        .as_ref()
        .map(|q| Directory::new(q.clone(), secs(t.directory_ttl)));
    let statement_budget = crate::prepared::Budget::new(config.upstream.max_total_prepared_bytes);
    let timeouts = crate::shared::limits::Limits::new(&config);
    let tenant_rate = crate::pool::rate::Rate::new(
        config.tenant.max_transactions_per_second,
        config.tenant.max_transactions_burst,
    );
    Ok(Shared {
        config,
        live: std::sync::RwLock::new(Arc::new(live)),
        pool,
        breakglass,
        cancels: Arc::new(CancelRegistry::default()),
        clients: Arc::new(Default::default()),
        config_path: std::sync::OnceLock::new(),
        events,
        tls,
        directory,
        shutdown: CancellationToken::new(),
        posture: Arc::new(PostureState::default()),
        statement_budget,
        timeouts,
        tenant_rate,
        console: Default::default(),
    })
}

async fn accept_loop(listener: Listener, shared: Arc<Shared>, tracker: TaskTracker) {
    let slots = Arc::new(Semaphore::new(shared.config.server.max_client_conn));
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shared.shutdown.cancelled() => return,
        };
        let conn = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        crate::metrics::client_connected();
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracker.spawn(too_many(conn.into_parts().0));
            continue;
        };
        let shared = shared.clone();
        tracker.spawn(async move {
            // Boxed: the posture wait and PROXY header state are freed before the session
            // starts, so an idle client's task cell stays small.
            if let Some((io, peer)) = Box::pin(admit(&shared, conn)).await {
                let id = format!("{:016x}", rand::random::<u64>());
                client::handle(shared, io, peer, id).await;
            }
            drop(permit);
            crate::metrics::client_disconnected();
        });
    }
}

/// Serves one already accepted TCP client from handshake to goodbye, with no connection cap,
/// posture gate or PROXY header: the other half of the fast test layer's seam (with
/// [`build_shared`]), which drives sessions over in-memory streams and a loopback listener.
#[cfg(feature = "internals")]
pub async fn serve_connection(
    shared: Arc<Shared>,
    io: BoxStream,
    peer: SocketAddr,
    session_id: String,
) {
    client::handle(shared, io, Peer::Tcp(peer), session_id).await
}

/// Checks that sessions may start (posture verified) and reads a PROXY header when
/// configured; `None` when the connection was refused (already answered or logged).
async fn admit(shared: &Arc<Shared>, conn: Accepted) -> Option<(BoxStream, Peer)> {
    let mut conn = conn;
    // Fail closed: no session before the upstream role is known not to bypass RLS.
    // Clients get a clear error instead of hanging while the upstream is unreachable.
    if !shared.posture.verified.is_cancelled()
        && tokio::time::timeout(Duration::from_secs(2), shared.posture.verified.cancelled())
            .await
            .is_err()
    {
        let err = match shared.posture.rejected() {
            Some(_) => crate::error::upstream_login_rejected(),
            None => crate::error::posture_unverified(),
        };
        refuse_early(conn.into_parts().0, err).await;
        return None;
    }
    // Fail closed: no session while the database does not enforce isolation (the reason is
    // logged and on /health/ready, not told to an unauthenticated client).
    if shared.posture.gate().is_some() {
        refuse_early(conn.into_parts().0, crate::error::posture_unprotected()).await;
        return None;
    }
    // PROXY headers come from load balancers on the network; a Unix client is on this host
    // (see `listener`).
    if let (true, Accepted::Tcp(tcp, peer)) = (shared.config.server.proxy_protocol, &mut conn) {
        match crate::proxy_protocol::accept(tcp, *peer, &shared.config.server.proxy_trusted).await {
            Ok(real) => *peer = real,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "connection refused");
                return None;
            }
        }
    }
    Some(conn.into_parts())
}

/// Over the cap: read the startup packet (briefly) and answer 53300, as PostgreSQL does.
async fn too_many(io: BoxStream) {
    refuse_early(io, crate::error::too_many_clients()).await;
    crate::metrics::client_disconnected();
}

/// Reads the first packet (briefly) and answers with a FATAL, as PostgreSQL does before a
/// session exists.
async fn refuse_early(mut tcp: BoxStream, err: crate::protocol::messages::PgError) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await;
    let mut out = bytes::BytesMut::new();
    err.encode(&mut out);
    let _ = tcp.write_all(&out).await;
}

/// Opens the first upstream connection in the background, retrying with backoff, so an
/// unreachable upstream at start is logged clearly without a crash loop.
async fn warm_up(pool: Arc<Pool>, shutdown: CancellationToken) {
    let mut delay = Duration::from_millis(200);
    loop {
        match pool.checkout(0, None, None).await {
            Ok(g) => {
                drop(g);
                return;
            }
            Err(crate::pool::PoolError::Upstream(e)) if e.is_login_rejection() => {
                // Not transient: the posture monitor reports it; retry slowly.
                delay = delay.max(crate::verify::monitor::LOGIN_RETRY);
                tracing::error!(error = %e, retry_in = ?delay, "the upstream server rejected the pool's login; not transient");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "upstream not reachable yet");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

/// `min_pool_size`: every second, reopens connections until that many are open.
async fn keep_warm(pool: Arc<Pool>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        pool.keep_warm().await;
    }
}

/// Closes idle upstream connections past `idle_timeout`; samples the SHOW STATS averages.
async fn reaper(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(crate::pool::stats::STATS_PERIOD);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.shutdown.cancelled() => return,
        }
        for p in std::iter::once(&shared.pool).chain(shared.breakglass.iter()) {
            p.reap_idle();
            p.stats.sample();
        }
    }
}
