//! The guard step of the session: the tenant guard's verdict on a message, the namespace
//! rewrite that forwards it, local refusals, trusted tenant switches and the rate limit.

use super::*;

impl Session {
    /// `[tenant] max_transactions_per_second`: the refusal of a transaction past the tenant's
    /// rate (recorded as `tenant_limited`), or None. One atomic load when the limit is off.
    pub(super) fn over_rate(&self) -> Option<PgError> {
        let (rate, burst) = self.shared.tenant_rate.get()?;
        let tag = self.seat.as_ref()?.tag();
        if tag.bucket.take(rate, burst, Instant::now()) {
            return None;
        }
        tag.usage
            .rate_limited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::client::record_tenant_limited(
            &self.shared,
            &self.who.subject(),
            tag.name(),
            crate::client::Limited::Rate(rate),
        );
        Some(error::tenant_rate_exceeded(tag.name(), rate))
    }

    /// Records a namespace refusal that names something the client did not create.
    pub(super) fn record_probe(&mut self, r: &Refusal) {
        let Some(name) = &r.probe else { return };
        let ev = SecurityEvent::new(
            crate::events::EventKind::StatementProbe,
            crate::events::Action::Block,
            self.who.subject(),
        )
        .detail(format!(
            "reference to a statement or portal this session did not create: \"{name}\""
        ))
        .sqlstate(r.error.code);
        self.shared.events.record(ev);
    }

    /// Writes one client message upstream and records its awaited answer; statement and
    /// portal names go through the session's namespace. Returns whether a synthetic answer may
    /// be ready for the client.
    pub(super) fn forward(&mut self, f: &Frame) -> Result<bool, Refusal> {
        let tag = f.tag();
        let rewritten = match tag {
            b'Q' | b'P' => self.rewrite_deallocate(f),
            _ => None,
        };
        let stats = &self.pool.stats;
        PoolStats::add(&stats.received, f.raw.len() as u64);
        match tag {
            b'Q' | b'E' => PoolStats::add(&stats.queries, 1),
            b'P' => PoolStats::add(&stats.client_parses, 1),
            b'B' => PoolStats::add(&stats.binds, 1),
            _ => {}
        }
        let Some(conn) = self.server.as_mut().map(|g| g.conn()) else {
            return Ok(false);
        };
        match (tag, rewritten) {
            (b'P', Some(r)) => {
                conn.stream().queue(&r);
                self.names.parsed_unnamed();
                self.relay.push(Expect::Client(Msg::Parse(None)));
            }
            (b'P' | b'B' | b'D' | b'E' | b'C', _) => {
                let done = self
                    .names
                    .forward(f, conn, &mut self.relay, self.segment_tick)?;
                return Ok(done == Forwarded::Synthetic);
            }
            (b'S', _) => {
                conn.stream().queue(&f.raw);
                self.relay.push(Expect::Client(Msg::Sync));
            }
            (b'Q', r) => {
                self.names.query_sent();
                conn.stream().queue(r.as_deref().unwrap_or(&f.raw));
                self.relay.push(Expect::Client(Msg::Query));
            }
            // Flush, or a message PostgreSQL itself will judge.
            _ => conn.stream().queue(&f.raw),
        }
        Ok(false)
    }

    /// A Query or unnamed Parse that is exactly `DEALLOCATE name` of one of the client's own
    /// statements (psycopg sends this when its cache evicts): the message, rewritten to drop
    /// the server statement the name maps to, so the client sees PostgreSQL's own answer.
    pub(super) fn rewrite_deallocate(&mut self, f: &Frame) -> Option<bytes::Bytes> {
        let text = match f.tag() {
            b'Q' => query_text(f.body())?,
            _ => parse_msg(f.body()).filter(|p| p.name.is_empty())?.sql,
        };
        if text.len() > 256 {
            return None;
        }
        let name = crate::prepared::sql_deallocate_name(text)?;
        let conn = self.server.as_mut()?.conn();
        let server = self
            .names
            .deallocate(&name, conn, &mut self.relay, self.segment_tick)?;
        let mut sql = b"DEALLOCATE \"".to_vec();
        sql.extend_from_slice(&server);
        sql.push(b'"');
        self.relay.expect_deallocate(server);
        let mut out = bytes::BytesMut::new();
        match f.tag() {
            b'Q' => messages::write_msg(&mut out, b'Q', |b| messages::put_cstr(b, &sql)),
            _ => {
                let types = parse_msg(f.body()).map(|p| p.types).unwrap_or_default();
                messages::parse_raw_types(&mut out, b"", &sql, types)
            }
        }
        Some(out.freeze())
    }

    /// Runs the tenant guard on statement-carrying messages and records its events.
    pub(super) async fn decide(
        &mut self,
        f: &Frame,
    ) -> Result<(Verdict, Vec<(String, bool)>), SessionError> {
        let tag = f.tag();
        let needs_tenant = matches!(self.who.kind, UserKind::App | UserKind::Operator);
        let text = match tag {
            b'Q' => query_text(f.body()),
            b'P' => parse_msg(f.body()).map(|p| p.sql),
            b'F' => {
                return Ok((
                    Verdict::Refuse(error::function_call_unsupported()),
                    Vec::new(),
                ))
            }
            b'S' | b'H' => return Ok((Verdict::Forward, Vec::new())),
            b'C' if !needs_tenant || self.who.tenant.is_some() => {
                return Ok((Verdict::Forward, Vec::new()))
            }
            _ if needs_tenant && self.who.tenant.is_none() => {
                let err = error::no_tenant(&self.shared.config.tenant.setting, &self.who.login);
                return Ok((Verdict::Refuse(err), Vec::new()));
            }
            _ => return Ok((Verdict::Forward, Vec::new())),
        };
        let Some(text) = text else {
            error::protocol_violation("invalid string in message").encode(self.client.out());
            return Err(SessionError::Client(StreamError::Frame(
                crate::protocol::FrameError::BadLength(-1),
            )));
        };
        // Valid UTF-8 is the rule: validate fast, and build a copy only otherwise.
        let sql = crate::tenant::guard::sql_text(text);
        let decision = if text.len() > OFFLOAD_INSPECTION {
            self.check_off_loop(f, text).await
        } else {
            let live = self.shared.live();
            let tenant = self.who.tenant.as_deref();
            if tag == b'P' && self.verdicts.hit(&live, tenant, text) {
                Decision::forward()
            } else {
                let d = live.policy.check(self.who.asker(), &sql);
                if tag == b'P' {
                    self.verdicts.remember(&live, tenant, text, &d);
                }
                d
            }
        };
        let Decision {
            mut verdict,
            events,
            secret,
            session_state,
            session_settings,
            resets_all,
            cursors,
        } = decision;
        if verdict == Verdict::Forward {
            for n in session_settings {
                if !self.pending_reads.contains(&n) {
                    self.pending_reads.push(n);
                }
            }
            if self.pending_reads.len() + self.prelude.local.len() > MAX_SESSION_SETTINGS {
                self.pending_reads.clear();
                verdict = Verdict::Refuse(error::too_many_session_settings(MAX_SESSION_SETTINGS));
            }
            self.pending_reset_all |= resets_all;
        }
        if let Some(what) = session_state {
            if self.mode == PoolMode::Transaction && verdict == Verdict::Forward {
                verdict = Verdict::Refuse(error::session_state_in_transaction_mode(what));
            }
        }
        self.tainted |= verdict == Verdict::Forward
            && events.iter().any(|e| {
                e.action == crate::events::Action::Log
                    && matches!(
                        e.kind,
                        crate::events::EventKind::TenantTamper
                            | crate::events::EventKind::RoleTamper
                            | crate::events::EventKind::RlsTamper
                    )
            });
        for e in events {
            let mut ev =
                SecurityEvent::new(e.kind, e.action, self.who.subject()).statement(&sql, secret);
            if let Verdict::Refuse(err) = &verdict {
                ev = ev.sqlstate(err.code);
            }
            if let Some(d) = e.detail {
                ev = ev.detail(d);
            }
            self.shared.events.record(ev);
        }
        let declared = if verdict == Verdict::Forward {
            cursors
        } else {
            Vec::new()
        };
        Ok((verdict, declared))
    }

    /// Inspects a large text on the blocking pool, so its size never stalls other sessions on
    /// the event loop. Fails closed if the inspection cannot finish.
    pub(super) async fn check_off_loop(&self, f: &Frame, text: &[u8]) -> Decision {
        let off = (text.as_ptr() as usize).saturating_sub(f.raw.as_ptr() as usize);
        let text = f.raw.slice(off..off + text.len());
        let live = self.shared.live();
        let who = self.who.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let sql = crate::tenant::guard::sql_text(&text);
            live.policy.check(who.asker(), &sql)
        })
        .await;
        checked.unwrap_or_else(|e| {
            tracing::error!(error = %e, "statement inspection failed; refused");
            Decision::refused(error::refused("a statement that could not be inspected"))
        })
    }

    /// Answers a refused message without the upstream, as PostgreSQL would: ErrorResponse, then
    /// ReadyForQuery for a Query, or skip to the next Sync for extended-protocol messages.
    pub(super) async fn refuse_locally(
        &mut self,
        tag: u8,
        err: PgError,
    ) -> Result<Flow, SessionError> {
        err.encode(self.client.out());
        match tag {
            b'Q' | b'F' => {
                let status = self.txn_status();
                messages::ready_for_query(self.client.out(), status)
            }
            _ => self.local_discard = true,
        }
        self.client.flush().await.map_err(SessionError::Client)?;
        Ok(Flow::Continue)
    }

    /// A trusted backend's `SET <setting> = 'X'`: validate X and switch, answering locally.
    pub(super) async fn switch_tenant(
        &mut self,
        tag: u8,
        to: String,
    ) -> Result<Flow, SessionError> {
        let live = self.shared.live();
        let cfg = &live.config;
        let format = cfg.tenant.format;
        let in_txn = self.txn_status() != b'I' || self.phase != Phase::Idle;
        let user = cfg.user(&self.who.user);
        let allowed = tag == b'Q'
            && !in_txn
            && validate_tenant_id(format, &to).is_ok()
            && user.is_some_and(|u| check_allowed(u, &canonical(format, &to)).is_ok());
        if !allowed {
            let err = error::refused(&format!("switching to tenant \"{to}\""));
            let ev = SecurityEvent::new(
                crate::events::EventKind::TenantTamper,
                crate::events::Action::Block,
                self.who.subject(),
            )
            .detail(format!("switch to \"{to}\" refused"))
            .statement(&format!("SET {} = '{to}'", cfg.tenant.setting), false)
            .asked_tenant(&to)
            .sqlstate(err.code);
            self.shared.events.record(ev);
            return self.refuse_locally(tag, err).await;
        }
        let to = canonical(format, &to);
        if self.who.tenant.as_deref() != Some(to.as_str()) {
            let cap = cfg.tenant.max_client_connections;
            let Some(seat) = Seat::take(&self.pool.tenant(&to), cap) else {
                crate::client::record_tenant_limited(
                    &self.shared,
                    &self.who.subject(),
                    &to,
                    crate::client::Limited::Switch,
                );
                let err = error::too_many_for_tenant(&to, false);
                return self.refuse_locally(tag, err).await;
            };
            self.seat = Some(seat);
        }
        let ev = SecurityEvent::new(
            crate::events::EventKind::TenantSwitch,
            crate::events::Action::Allow,
            self.who.subject(),
        )
        .statement(&format!("SET {} = '{to}'", cfg.tenant.setting), false)
        .switch(self.who.tenant.as_deref(), &to);
        self.shared.events.record(ev);
        self.prelude = Prelude::new(&cfg.tenant.setting, Some(&to), &self.prelude.local);
        self.prelude.set_signing(signing_key(&self.shared).as_ref());
        if let Ok(mut t) = self.listed.info.tenant.lock() {
            *t = Some(to.clone());
        }
        self.who.tenant = Some(to);
        messages::write_msg(self.client.out(), b'C', |b| messages::put_cstr(b, b"SET"));
        let status = self.txn_status();
        messages::ready_for_query(self.client.out(), status);
        self.client.flush().await.map_err(SessionError::Client)?;
        Ok(Flow::Continue)
    }
}
