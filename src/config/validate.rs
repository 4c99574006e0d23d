//! Loading and validating a configuration: every rule a key's value must follow, with the
//! key named in the error.

use super::*;

impl Config {
    /// Reads, parses and validates a config file (no file it names is opened: see
    /// [`Config::load_checked`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::from_toml(&Self::read(path)?)
    }

    /// What `check-config` and `serve` run: [`Config::load`], then every check `serve` would
    /// otherwise fail on later, short of connecting ([`preflight`]: TLS files parse, the event
    /// log is writable). Errors name the key and its line.
    pub fn load_checked(path: &Path) -> Result<Config, ConfigError> {
        let text = Self::read(path)?;
        let cfg = Self::from_toml(&text)?;
        preflight::check(&cfg).map_err(|e| e.located(&text))?;
        Ok(cfg)
    }

    fn read(path: &Path) -> Result<String, ConfigError> {
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses and validates TOML text; errors carry the line of the key they name.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| locate::parse_error(text, &e))?;
        cfg.validate().map_err(|e| e.located(text))?;
        Ok(cfg)
    }

    /// Checks cross-field rules and resolves secrets; called by `load`.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        self.upstream.pool_timeout = resolve_query_wait_timeout(&self.upstream)?;
        let wait_key = match self.upstream.pool_timeout_old_name {
            Some(_) => "upstream.pool_timeout",
            None => "upstream.query_wait_timeout",
        };
        let s = &self.server;
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            return Err(invalid(
                "server.tls_cert",
                "tls_cert and tls_key must be given together",
            ));
        }
        if s.require_tls && s.tls_cert.is_none() {
            return Err(invalid(
                "server.require_tls",
                "require_tls needs tls_cert and tls_key",
            ));
        }
        if s.require_tls && matches!(s.listen, listen::Listen::Unix(_)) {
            return Err(invalid(
                "server.require_tls",
                "clients on a Unix socket never negotiate TLS (libpq does not use it there), so every one would be refused: listen on TCP for TLS",
            ));
        }
        if s.proxy_protocol && s.proxy_trusted.is_empty() {
            return Err(invalid(
                "server.proxy_trusted",
                "proxy_protocol needs the load balancers' networks, e.g. [\"10.0.0.0/8\"]",
            ));
        }
        if s.worker_threads > 1024 {
            return Err(invalid(
                "server.worker_threads",
                "must be between 0 (one per core) and 1024",
            ));
        }
        if s.max_client_conn == 0 {
            return Err(invalid("server.max_client_conn", "must be at least 1"));
        }
        if s.max_message_size < 1024 {
            return Err(invalid("server.max_message_size", "must be at least 1024"));
        }
        for (key, v) in [
            ("server.client_idle_timeout", s.client_idle_timeout),
            (wait_key, self.upstream.pool_timeout),
            ("upstream.query_timeout", self.upstream.query_timeout),
            (
                "upstream.idle_transaction_timeout",
                self.upstream.idle_transaction_timeout,
            ),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(
                    key,
                    "must be 0 (off) or a positive number of seconds",
                ));
            }
        }
        for (key, v) in [
            ("server.auth_timeout", s.auth_timeout),
            ("server.shutdown_timeout", s.shutdown_timeout),
            (
                "upstream.reserve_pool_timeout",
                self.upstream.reserve_pool_timeout,
            ),
            ("upstream.connect_timeout", self.upstream.connect_timeout),
            ("upstream.idle_timeout", self.upstream.idle_timeout),
            ("upstream.server_lifetime", self.upstream.server_lifetime),
            ("tenant.directory_ttl", self.tenant.directory_ttl),
            (
                "security.drift_check_interval",
                self.security.drift_check_interval,
            ),
            ("security.event_window", self.security.event_window),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(key, "must be a positive number of seconds"));
            }
        }

        self.validate_security_limits()?;

        let u = &mut self.upstream;
        if u.pool_size == 0 {
            return Err(invalid("upstream.pool_size", "must be at least 1"));
        }
        if u.min_pool_size > u.pool_size {
            return Err(invalid(
                "upstream.min_pool_size",
                format!("must not exceed pool_size ({})", u.pool_size),
            ));
        }
        if u.max_db_connections != 0 && u.max_db_connections < u.min_pool_size {
            return Err(invalid(
                "upstream.max_db_connections",
                format!(
                    "must be at least min_pool_size ({}), or 0 for no limit",
                    u.min_pool_size
                ),
            ));
        }
        for (key, value) in [
            ("upstream.host", &u.host),
            ("upstream.database", &u.database),
            ("upstream.user", &u.user),
        ] {
            if value.is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if u.port == 0 {
            return Err(invalid("upstream.port", "must be between 1 and 65535"));
        }
        if u.host.starts_with('/') && u.tls != UpstreamTls::Disable {
            return Err(invalid(
                "upstream.tls",
                "a Unix-socket host (a path) is never encrypted: use tls = \"disable\", or a TCP host name for TLS",
            ));
        }
        if !u.host.starts_with('/') && u.host.contains('/') {
            return Err(invalid(
                "upstream.host",
                "a Unix-socket directory must be an absolute path, e.g. \"/var/run/postgresql\"",
            ));
        }
        u.resolved_password = resolve_secret(
            "upstream.password",
            u.password.as_deref(),
            u.password_env.as_deref(),
        )?;
        if let Some(bg) = u.breakglass.as_mut() {
            if bg.pool_size == 0 {
                return Err(invalid(
                    "upstream.breakglass.pool_size",
                    "must be at least 1",
                ));
            }
            bg.resolved_password = resolve_secret(
                "upstream.breakglass.password",
                bg.password.as_deref(),
                bg.password_env.as_deref(),
            )?;
        }

        let t = &mut self.tenant;
        if !is_guc_name(&t.setting) {
            return Err(invalid(
                "tenant.setting",
                "must be a custom setting name like `app.tenant_id`",
            ));
        }
        if t.setting
            .eq_ignore_ascii_case(crate::signing::SIGNATURE_SETTING)
        {
            return Err(invalid(
                "tenant.setting",
                "tenantgate.signature is reserved for the signature of the tenant context",
            ));
        }
        if let Some(path) = &t.signing_key_file {
            // Fail closed: signing configured but no usable key refuses the configuration.
            let keys = crate::signing::KeyRing::load(path)
                .map_err(|e| invalid("tenant.signing_key_file", e.to_string()))?;
            t.resolved_signing_keys = Some(std::sync::Arc::new(keys));
        }
        if t.column.is_empty() {
            return Err(invalid("tenant.column", "must not be empty"));
        }
        for (key, v) in [
            ("tenant.max_server_connections", t.max_server_connections),
            ("tenant.max_client_connections", t.max_client_connections),
        ] {
            if v == Some(0) {
                return Err(invalid(
                    key,
                    "must be at least 1 (leave it out for no per-tenant cap)",
                ));
            }
        }
        if let Some(rate) = t.max_transactions_per_second {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(invalid(
                    "tenant.max_transactions_per_second",
                    "must be a positive number (leave it out for no limit)",
                ));
            }
        }
        match (t.max_transactions_burst, t.max_transactions_per_second) {
            (Some(0), _) => {
                return Err(invalid(
                    "tenant.max_transactions_burst",
                    "must be at least 1",
                ))
            }
            (Some(_), None) => {
                return Err(invalid(
                    "tenant.max_transactions_burst",
                    "needs max_transactions_per_second",
                ))
            }
            _ => {}
        }
        if t.metrics_top_n > 1000 {
            return Err(invalid(
                "tenant.metrics_top_n",
                "must be at most 1000 (each tenant named is a set of series)",
            ));
        }
        if let Some(q) = &t.directory_query {
            if !q.contains("$1") {
                return Err(invalid(
                    "tenant.directory_query",
                    "must take the slug as parameter $1",
                ));
            }
        }

        if let Some(path) = self.server.auth_file.clone() {
            auth_file::merge(&path, &mut self.users)?;
        }
        if self.users.is_empty() {
            return Err(invalid(
                "users",
                "no [[users]] entry: no client could log in (add at least one; see config.example.toml)",
            ));
        }
        let client_tls = self.server.tls_cert.is_some();
        let mut seen = HashMap::new();
        let format = self.tenant.format;
        let has_breakglass = self.upstream.breakglass.is_some();
        for (i, user) in self.users.iter().enumerate() {
            let key = |k: &str| format!("users[{i}].{k}");
            if user.name.is_empty() {
                return Err(invalid(key("name"), "must not be empty"));
            }
            if let Some(first) = seen.insert(user.name.clone(), i) {
                return Err(invalid(
                    key("name"),
                    format!(
                        "duplicate user `{}` (also users[{first}], the {} [[users]] entry)",
                        user.name,
                        ordinal(first + 1)
                    ),
                ));
            }
            if user.auth == AuthMethod::Password && !client_tls {
                return Err(invalid(
                    key("auth"),
                    "\"password\" (cleartext) is only accepted over TLS, and [server] has no tls_cert/tls_key: this user could never log in; use \"scram-sha-256\" or configure TLS",
                ));
            }
            match (&user.password, &user.scram) {
                (None, None) => {
                    return Err(invalid(
                        key("password"),
                        "one of password or scram is required (here or in [server] auth_file)",
                    ))
                }
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        key("scram"),
                        "give either password or scram, not both",
                    ))
                }
                (None, Some(v)) => {
                    crate::auth::parse_verifier(v)
                        .map_err(|e| invalid(key("scram"), e.to_string()))?;
                    if user.auth != AuthMethod::ScramSha256 {
                        return Err(invalid(
                            key("auth"),
                            "md5 and password need a plaintext `password`",
                        ));
                    }
                }
                (Some(_), None) => {}
            }
            if user.pool_mode.is_some() && !matches!(user.kind, UserKind::App | UserKind::Operator)
            {
                return Err(invalid(
                    key("pool_mode"),
                    "only applies to `app` and `operator` users (break-glass sessions always hold their connection; admin users have none)",
                ));
            }
            if let Some(n) = user.pool_size {
                let pool = match user.kind {
                    UserKind::Breakglass => self.upstream.breakglass.as_ref().map(|b| b.pool_size),
                    UserKind::Admin => None,
                    _ => Some(self.upstream.pool_size),
                };
                let Some(size) = pool else {
                    return Err(invalid(
                        key("pool_size"),
                        "admin users have no server connections",
                    ));
                };
                if n == 0 || n > size {
                    return Err(invalid(
                        key("pool_size"),
                        format!("must be between 1 and the pool's own size ({size}): users share one pool"),
                    ));
                }
            }
            if user.max_user_connections.is_some() && user.kind == UserKind::Admin {
                return Err(invalid(
                    key("max_user_connections"),
                    "admin users have no server connections",
                ));
            }
            if user.tenant.is_some() && user.tenants.is_some() {
                return Err(invalid(
                    key("tenants"),
                    "give either tenant or tenants, not both",
                ));
            }
            if let Some(tenant) = &user.tenant {
                validate_tenant_id(format, tenant)
                    .map_err(|e| invalid(key("tenant"), e.to_string()))?;
            }
            match &user.tenants {
                Some(TenantsSpec::Any(s)) if s != "*" => {
                    return Err(invalid(
                        key("tenants"),
                        "must be \"*\" or a list of tenant ids",
                    ))
                }
                Some(TenantsSpec::List(list)) => {
                    if list.is_empty() {
                        return Err(invalid(key("tenants"), "the list must not be empty"));
                    }
                    for t in list {
                        validate_tenant_id(format, t)
                            .map_err(|e| invalid(key("tenants"), e.to_string()))?;
                    }
                }
                _ => {}
            }
            match user.kind {
                UserKind::Breakglass => {
                    if !has_breakglass {
                        return Err(invalid(
                            key("kind"),
                            "breakglass users need an [upstream.breakglass] section",
                        ));
                    }
                    if user.tenant.is_some() || user.tenants.is_some() {
                        return Err(invalid(key("kind"), "breakglass users have no tenant"));
                    }
                }
                UserKind::Admin => {
                    if user.tenant.is_some() || user.tenants.is_some() {
                        return Err(invalid(key("kind"), "admin users have no tenant"));
                    }
                }
                UserKind::App | UserKind::Operator => {
                    if user.tenant.is_none() && user.tenants.is_none() {
                        return Err(invalid(
                            key("tenant"),
                            "app and operator users need `tenant` or `tenants`",
                        ));
                    }
                }
            }
            if user.allow_catalog_monitoring
                && !matches!(user.kind, UserKind::App | UserKind::Operator)
            {
                return Err(invalid(
                    key("allow_catalog_monitoring"),
                    "only applies to `app` and `operator` users (others are not inspected)",
                ));
            }
            if user.allow_switch && user.tenants.is_none() {
                return Err(invalid(key("allow_switch"), "needs `tenants`"));
            }
        }
        Ok(())
    }

    /// Event budgets must allow at least one line; the mock-auth secret must be long enough
    /// not to be guessed.
    fn validate_security_limits(&mut self) -> Result<(), ConfigError> {
        let sec = &mut self.security;
        for (key, v) in [
            ("security.events_per_session", sec.events_per_session),
            ("security.events_per_tenant", sec.events_per_tenant),
            ("security.events_per_window", sec.events_per_window),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        sec.resolved_mock_auth_secret = resolve_secret(
            "security.mock_auth_secret",
            sec.mock_auth_secret.as_deref(),
            sec.mock_auth_secret_env.as_deref(),
        )?;
        if sec
            .resolved_mock_auth_secret
            .as_ref()
            .is_some_and(|s| s.len() < 16)
        {
            return Err(invalid(
                "security.mock_auth_secret",
                "must be at least 16 characters",
            ));
        }
        Ok(())
    }

    /// By configured name, exactly: a `name.<tenant>` login must be resolved first.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// `query_wait_timeout`, or its old name `pool_timeout` (not both), or the default.
fn resolve_query_wait_timeout(u: &UpstreamConfig) -> Result<f64, ConfigError> {
    match (u.query_wait_timeout, u.pool_timeout_old_name) {
        (Some(_), Some(_)) => Err(invalid(
            "upstream.pool_timeout",
            "pool_timeout is the old name of query_wait_timeout: give only one of them",
        )),
        (Some(v), None) | (None, Some(v)) => Ok(v),
        (None, None) => Ok(default_pool_timeout()),
    }
}

/// `1st`, `2nd`, `3rd`, `4th` … for "the 8th `[[users]]` entry".
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn resolve_secret(
    key: &str,
    inline: Option<&str>,
    env: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    match (inline, env) {
        (Some(_), Some(_)) => Err(invalid(
            key,
            "give either password or password_env, not both",
        )),
        (Some(p), None) => Ok(Some(p.to_owned())),
        (None, Some(var)) => std::env::var(var).map(Some).map_err(|_| {
            invalid(
                format!("{key}_env"),
                format!("environment variable {var} is not set"),
            )
        }),
        (None, None) => Ok(None),
    }
}

/// A custom GUC name: two or more dot-separated identifier parts.
pub(super) fn is_guc_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !p.as_bytes()[0].is_ascii_digit()
        })
}
