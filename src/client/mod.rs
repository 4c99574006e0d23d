//! The client side: handshake, authentication, tenant choice, then the session loop.

pub mod handshake;
pub mod rewrite;
pub mod session;
pub mod settings;
pub mod timeouts;
pub mod verdicts;
pub mod who;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::auth;
use crate::config::{UserConfig, UserKind};
use crate::error;
use crate::events::{Action, EventKind, SecurityEvent, Subject};
use crate::listener::Peer;
use crate::pool::queue::Seat;
use crate::protocol::messages::{self, PgError};
use crate::protocol::stream::BoxStream;
use crate::protocol::PqStream;
use crate::shared::Shared;
use crate::tenant::identity::{self, Choice, TenantRequest, TenantSource};
use handshake::{HandshakeError, Opening, Startup};
use session::{Session, SessionParts};
use who::{kind_name, Identity};

/// A login that passed every check, ready to become a session.
struct Login {
    /// The client's startup settings, validated and normalised by the server.
    settings: settings::ClientSettings,
    /// An admin on the console database rather than a data session.
    console: bool,
    tls: bool,
    stream: PqStream,
    who: Identity,
    startup: Vec<(String, String)>,
}

/// What an accepted connection becomes once it has logged in.
enum Opened {
    /// A data session, ready to run.
    Session(Box<Session>),
    /// An admin on the console database, greeted.
    Console(PqStream),
}

/// Serves one accepted TCP connection from handshake to goodbye.
pub async fn handle(shared: Arc<Shared>, io: BoxStream, peer: Peer, session_id: String) {
    let span = tracing::info_span!("session", session_id = %session_id, client_addr = %peer, user = tracing::field::Empty, tenant = tracing::field::Empty);
    // Boxed: the handshake, SCRAM and greeting state is freed once the session starts, so an
    // idle session's task holds only the (boxed) session loop.
    let opened = Box::pin(open(&shared, io, peer, session_id, &span)).await;
    match opened {
        None => {}
        Some(Opened::Console(stream)) => {
            if let Err(e) = Box::pin(crate::admin::console::run(shared.clone(), stream)).await {
                tracing::debug!(parent: &span, error = %e, "console session ended with an error");
            }
        }
        Some(Opened::Session(session)) => {
            let run = tracing::Instrument::instrument(Box::pin(session.run()), span.clone());
            if let Err(e) = run.await {
                tracing::debug!(parent: &span, error = %e, "session ended with an error");
            }
        }
    }
}

/// Login, then the greeting: everything between accept and the session loop.
/// `None`: the connection was refused, cancelled or timed out (already answered or logged).
async fn open(
    shared: &Arc<Shared>,
    tcp: BoxStream,
    peer: Peer,
    session_id: String,
    span: &tracing::Span,
) -> Option<Opened> {
    let auth_timeout = crate::config::secs(shared.config.server.auth_timeout);
    let opened = tokio::time::timeout(auth_timeout, login(shared, tcp, peer, session_id)).await;
    let login = match opened {
        Err(_) => {
            tracing::debug!(parent: span, "startup/authentication timed out");
            return None;
        }
        Ok(Ok(Some(l))) => l,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            tracing::debug!(parent: span, error = %e, "connection refused during startup");
            return None;
        }
    };
    span.record("user", login.who.login.as_str());
    if let Some(t) = &login.who.tenant {
        span.record("tenant", t.as_str());
    }
    if login.console {
        let mut stream = login.stream;
        let key = (rand::random::<i32>() & 0x7fff_ffff, rand::random::<i32>());
        if let Err(e) = greet(&shared.pool, &mut stream, &login.startup, &[], key).await {
            e.encode(stream.out());
            let _ = stream.flush().await;
            return None;
        }
        return Some(Opened::Console(stream));
    }
    let pool = match login.who.kind {
        UserKind::Breakglass => match &shared.breakglass {
            Some(p) => p.clone(),
            None => return None,
        },
        _ => shared.pool.clone(),
    };
    let deadline = if login.who.kind == UserKind::Breakglass {
        shared
            .config
            .upstream
            .breakglass
            .as_ref()
            .and_then(|b| b.max_session_seconds)
            .map(|s| Instant::now() + Duration::from_secs(s))
    } else {
        None
    };
    // A seat under the tenant's `max_client_connections` (from the live config: a reload
    // applies to new sessions), held by the session until it ends.
    let seat = match (&login.who.tenant, login.who.kind) {
        (Some(t), UserKind::App | UserKind::Operator) => {
            let cap = shared.live().config.tenant.max_client_connections;
            match Seat::take(&pool.tenant(t), cap) {
                Some(seat) => Some(seat),
                None => {
                    record_tenant_limited(shared, &login.who.subject(), t, Limited::Login);
                    let mut stream = login.stream;
                    error::too_many_for_tenant(t, true).encode(stream.out());
                    let _ = stream.flush().await;
                    return None;
                }
            }
        }
        _ => None,
    };
    let cancel = shared.cancels.register(&pool.spec().host, pool.spec().port);
    let listed = shared
        .clients
        .add(login.who.listing(peer.socket_addr(), login.tls, pool.name));
    let mut stream = login.stream;
    if let Err(e) = greet(
        &pool,
        &mut stream,
        &login.startup,
        &login.settings.reported,
        cancel.key,
    )
    .await
    {
        e.encode(stream.out());
        let _ = stream.flush().await;
        return None;
    }
    let session = Session::new(SessionParts {
        shared: shared.clone(),
        client: stream,
        who: login.who,
        pool,
        seat,
        cancel,
        deadline,
        listed,
        settings: login.settings,
    });
    Some(Opened::Session(Box::new(session)))
}

/// Which per-tenant limit refused something.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limited {
    /// `max_client_connections`, at login.
    Login,
    /// `max_client_connections`, at a trusted switch to the tenant.
    Switch,
    /// `max_transactions_per_second` (the configured rate), at a transaction's start.
    Rate(f64),
}

/// Records a `tenant_limited` event: a per-tenant limit refused a login, a switch or a
/// transaction (aggregated like the probe events).
pub(crate) fn record_tenant_limited(
    shared: &Shared,
    subject: &Subject,
    tenant: &str,
    limit: Limited,
) {
    let (sqlstate, detail) = match limit {
        Limited::Login => (
            "53300",
            format!("new session of tenant \"{tenant}\" refused: [tenant] max_client_connections reached"),
        ),
        Limited::Switch => (
            "53300",
            format!("switch to tenant \"{tenant}\" refused: [tenant] max_client_connections reached"),
        ),
        Limited::Rate(rate) => (
            "53400",
            format!("transaction of tenant \"{tenant}\" refused: [tenant] max_transactions_per_second ({rate}) reached"),
        ),
    };
    let ev = SecurityEvent::new(EventKind::TenantLimited, Action::Block, subject)
        .sqlstate(sqlstate)
        .detail(detail);
    shared.events.record(ev);
}

/// Handshake, authentication and tenant choice. `Ok(None)`: handled (cancel) or refused.
async fn login(
    shared: &Arc<Shared>,
    tcp: BoxStream,
    peer: Peer,
    session_id: String,
) -> Result<Option<Login>, HandshakeError> {
    let live = shared.live();
    let cfg = &live.config;
    let opening =
        match handshake::negotiate(tcp, shared.tls.as_ref(), cfg.server.max_message_size).await {
            Ok(o) => o,
            Err(HandshakeError::Refuse(e)) => {
                // No stream to answer on after a failed negotiation (the socket was consumed).
                tracing::debug!(message = %e.message, "startup refused");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
    let mut start: Startup = match opening {
        Opening::Cancel { pid, secret } => {
            shared.cancels.cancel(pid, secret);
            return Ok(None);
        }
        Opening::Session(s) => s,
    };
    let refuse = |stream: &mut PqStream, e: PgError| {
        e.encode(stream.out());
    };
    let Some(login_name) = start.param("user").map(str::to_owned) else {
        refuse(&mut start.stream, error::no_user());
        start.stream.flush().await?;
        return Ok(None);
    };
    let database = start.param("database").unwrap_or(&login_name).to_owned();
    let application_name = start.param("application_name").map(str::to_owned);
    let mut subject = Subject {
        session_id,
        user: Some(login_name.clone()),
        kind: None,
        tenant: None,
        client_addr: Some(peer.to_string()),
        application_name,
        database: Some(database.clone()),
    };
    if cfg.server.require_tls && !start.tls {
        refuse(
            &mut start.stream,
            error::tls_required(&peer.host(), &login_name, &database),
        );
        start.stream.flush().await?;
        return Ok(None);
    }
    negotiate_protocol(&mut start);

    // Which configured user is this? Exact name first, then NAME.TENANT.
    let (user, suffix) = resolve_user(&cfg.users, &login_name);
    if let Some(u) = user {
        subject.user = Some(u.name.clone());
        subject.kind = Some(kind_name(u.kind));
    }
    let cred = user.and_then(|u| live.auth.get(&u.name));
    let auth = auth::authenticate(
        &mut start.stream,
        &login_name,
        cred.as_deref(),
        live.auth.mock(),
        start.tls,
    )
    .await;
    if let Err(e) = auth {
        let err = match e {
            auth::AuthError::NeedsTls => error::cleartext_needs_tls(&login_name),
            auth::AuthError::Stream(_) => return Ok(None),
            _ => error::auth_failed(&login_name),
        };
        shared.events.record(
            SecurityEvent::new(EventKind::AuthFailed, Action::Block, &subject)
                .sqlstate(err.code)
                .detail(e.to_string()),
        );
        refuse(&mut start.stream, err);
        start.stream.flush().await?;
        return Ok(None);
    }
    let Some(user) = user else {
        return Ok(None);
    };
    let console = crate::admin::console::is_console(&database) && user.kind == UserKind::Admin;
    if user.kind == UserKind::Admin && !console {
        refuse(
            &mut start.stream,
            error::admin_console_only(crate::admin::console::DATABASE),
        );
        start.stream.flush().await?;
        return Ok(None);
    }
    if database != cfg.upstream.database && !console {
        refuse(&mut start.stream, error::unknown_database(&database));
        start.stream.flush().await?;
        return Ok(None);
    }

    // Tenant choice.
    let mut requests = Vec::new();
    if let Some(s) = suffix {
        requests.push(TenantRequest {
            source: TenantSource::UserSuffix,
            value: s,
        });
    }
    if start
        .param("replication")
        .is_some_and(|r| r != "false" && r != "0")
    {
        refuse(&mut start.stream, error::replication_unsupported());
        start.stream.flush().await?;
        return Ok(None);
    }
    let client_settings = match settings::classify(&start.params, &cfg.tenant.setting) {
        Ok((s, tenant_requests)) => {
            requests.extend(tenant_requests);
            s
        }
        Err(forbidden) => {
            let err = forbidden.error();
            shared.events.record(
                SecurityEvent::new(forbidden.event, Action::Block, &subject)
                    .sqlstate(err.code)
                    .detail(forbidden.to_string()),
            );
            refuse(&mut start.stream, err);
            start.stream.flush().await?;
            return Ok(None);
        }
    };
    if let (Some(sni), Some(sfx)) = (&start.sni, &cfg.tenant.sni_suffix) {
        if let Some(t) = sni.strip_suffix(sfx.as_str()) {
            requests.push(TenantRequest {
                source: TenantSource::Sni,
                value: t.to_owned(),
            });
        }
    }
    let choice = identity::choose(
        user,
        cfg.tenant.format,
        &requests,
        shared.directory.is_some(),
    );
    let tenant = match choice {
        Ok(Choice::Tenant(t)) => Some(t),
        Ok(Choice::None) => None,
        Ok(Choice::Lookup(slug)) => match lookup(shared, user, &slug).await {
            Ok(t) => Some(t),
            Err(e) => {
                let is_tamper = e.is_tamper();
                tenant_refusal(
                    shared,
                    &subject,
                    &mut start.stream,
                    &e,
                    is_tamper,
                    &requests,
                )
                .await?;
                return Ok(None);
            }
        },
        Err(e) => {
            tenant_refusal(
                shared,
                &subject,
                &mut start.stream,
                &e,
                e.is_tamper(),
                &requests,
            )
            .await?;
            return Ok(None);
        }
    };
    subject.tenant = tenant.clone();
    if user.kind == UserKind::Breakglass {
        shared.events.record(
            SecurityEvent::new(EventKind::BreakglassSession, Action::Allow, &subject)
                .detail("break-glass session started on the BYPASSRLS pool"),
        );
    }
    let settings = match validate_settings(shared, client_settings).await {
        Ok(s) => s,
        Err(e) => {
            refuse(&mut start.stream, e);
            start.stream.flush().await?;
            return Ok(None);
        }
    };
    Ok(Some(Login {
        settings,
        console,
        tls: start.tls,
        stream: start.stream,
        who: Identity {
            session_id: subject.session_id,
            login: login_name,
            user: user.name.clone(),
            kind: user.kind,
            allow_switch: user.allow_switch,
            pool_mode: user.pool_mode,
            database,
            application_name: subject.application_name,
            client_addr: peer.to_string(),
            tenant,
        },
        startup: start.params,
    }))
}

async fn lookup(
    shared: &Arc<Shared>,
    user: &UserConfig,
    slug: &str,
) -> Result<String, identity::TenantRefusal> {
    let format = shared.config.tenant.format;
    let invalid = |reason: String| identity::TenantRefusal::Invalid {
        asked: slug.to_owned(),
        reason,
    };
    let Some(dir) = &shared.directory else {
        return Err(invalid("no tenant directory is configured".into()));
    };
    let id = match dir.lookup(&shared.pool, slug).await {
        Ok(Some(id)) => id,
        Ok(None) => return Err(invalid("no such tenant".into())),
        Err(e) => {
            tracing::warn!(error = %e, "tenant directory lookup failed");
            return Err(invalid("the tenant directory is unavailable".into()));
        }
    };
    crate::tenant_id::validate_tenant_id(format, &id)
        .map_err(|e| invalid(format!("directory returned an invalid id: {e}")))?;
    let id = crate::tenant_id::canonical(format, &id);
    identity::check_allowed(user, &id)?;
    Ok(id)
}

async fn tenant_refusal(
    shared: &Arc<Shared>,
    subject: &Subject,
    stream: &mut PqStream,
    e: &identity::TenantRefusal,
    tamper: bool,
    requests: &[TenantRequest],
) -> Result<(), HandshakeError> {
    let err = error::tenant_refused(e);
    let sources: Vec<&str> = requests.iter().map(|r| r.source.as_str()).collect();
    let ev = SecurityEvent::new(
        if tamper {
            EventKind::TenantTamper
        } else {
            EventKind::NoTenantRefused
        },
        Action::Block,
        subject,
    )
    .sqlstate(err.code)
    .detail(format!("{e} (asked via {})", sources.join(", ")));
    shared.events.record(ev);
    err.encode(stream.out());
    stream.flush().await?;
    Ok(())
}

/// Checks the client's settings the way PostgreSQL would at connect (a bad value refuses the
/// connection), and learns their normalised values (`ISO` → `ISO, MDY`), so later comparisons
/// with a server's reported values are exact. One round trip, only when there is something to
/// check; run in a transaction that changes nothing.
async fn validate_settings(
    shared: &Arc<Shared>,
    mut s: settings::ClientSettings,
) -> Result<settings::ClientSettings, PgError> {
    let defaults = shared.pool.server_params().unwrap_or_default();
    let check: Vec<(String, String)> = s
        .reported
        .iter()
        .filter(|(k, v)| {
            k != "application_name" && defaults.iter().all(|(dk, dv)| dk != k || dv != v)
        })
        .chain(s.local.iter())
        .cloned()
        .collect();
    if check.is_empty() {
        return Ok(s);
    }
    let unavailable = || error::upstream_unavailable().into_fatal();
    let mut guard = shared
        .pool
        .checkout(0, None, None)
        .await
        .map_err(|_| unavailable())?;
    let conn = guard.conn();
    let out = conn.stream().out();
    messages::parse(
        out,
        b"",
        b"SELECT pg_catalog.set_config($1, $2, true)",
        &[25, 25],
    );
    for (k, v) in &check {
        messages::bind_text(out, b"", b"", &[k.as_bytes(), v.as_bytes()]);
        messages::execute(out, b"");
    }
    messages::sync(out);
    let values = match crate::pool::upstream::run_batch(conn)
        .await
        .map_err(|_| unavailable())?
    {
        Ok(v) => v,
        Err(e) => {
            return Err(error::startup_setting_rejected(&e.code, e.message));
        }
    };
    for ((k, _), v) in check.iter().zip(values) {
        let Some(v) = v else { continue };
        if let Some(slot) = s
            .reported
            .iter_mut()
            .chain(s.local.iter_mut())
            .find(|(n, _)| n == k)
        {
            slot.1 = v;
        }
    }
    Ok(s)
}

/// Sends NegotiateProtocolVersion for 3.x (x > 0) or `_pq_.` options, then speaks 3.0.
fn negotiate_protocol(start: &mut Startup) {
    let unknown: Vec<String> = start
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.clone())
        .collect();
    if start.minor == 0 && unknown.is_empty() {
        return;
    }
    messages::write_msg(start.stream.out(), b'v', |b| {
        use bytes::BufMut;
        b.put_i32(0);
        b.put_i32(unknown.len() as i32);
        for k in &unknown {
            messages::put_cstr(b, k.as_bytes());
        }
    });
}

/// Sends AuthenticationOk, ParameterStatus, BackendKeyData and ReadyForQuery.
async fn greet(
    pool: &Arc<crate::pool::Pool>,
    stream: &mut PqStream,
    startup: &[(String, String)],
    reported: &[(String, String)],
    key: (i32, i32),
) -> Result<(), PgError> {
    let params = match pool.server_params() {
        Some(p) => p,
        None => {
            // First client before any upstream connection: open one to learn the parameters.
            match pool.checkout(0, None, None).await {
                Ok(g) => {
                    drop(g);
                    pool.server_params().unwrap_or_default()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the upstream to learn its parameters");
                    return Err(error::upstream_unavailable().into_fatal());
                }
            }
        }
    };
    let mut out = BytesMut::new();
    messages::authentication(&mut out, 0, &[]);
    for (k, v) in &params {
        let client_value = match k.as_str() {
            "application_name" => Some(
                startup
                    .iter()
                    .find(|(n, _)| n == "application_name")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or(""),
            ),
            _ => reported
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str()),
        };
        messages::parameter_status(&mut out, k, client_value.unwrap_or(v));
    }
    messages::backend_key_data(&mut out, key.0, key.1);
    messages::ready_for_query(&mut out, b'I');
    stream.queue(&out);
    stream.flush().await.map_err(|_| error::client_lost())?;
    // The greeting is the biggest write an idle client sees; do not keep its buffer.
    stream.release_write_buffer();
    Ok(())
}

/// Finds the configured user for a login name: exact match, else `NAME.SUFFIX`.
pub fn resolve_user<'a>(
    users: &'a [UserConfig],
    login: &str,
) -> (Option<&'a UserConfig>, Option<String>) {
    if let Some(u) = users.iter().find(|u| u.name == login) {
        return (Some(u), None);
    }
    let mut at = 0;
    while let Some(pos) = login[at..].find('.') {
        let dot = at + pos;
        let (name, rest) = (&login[..dot], &login[dot + 1..]);
        if let Some(u) = users.iter().find(|u| u.name == name) {
            if !rest.is_empty() {
                return (Some(u), Some(rest.to_owned()));
            }
        }
        at = dot + 1;
    }
    (None, None)
}
