//! Default values of the configuration keys (serde's `default = "…"`).

pub(super) fn default_worker_threads() -> usize {
    1
}

pub(super) fn default_max_client_conn() -> usize {
    10_000
}
pub(super) fn default_max_message_size() -> usize {
    64 * 1024 * 1024
}
pub(super) fn default_auth_timeout() -> f64 {
    10.0
}
pub(super) fn default_shutdown_timeout() -> f64 {
    30.0
}
pub(super) fn default_pg_port() -> u16 {
    5432
}
pub(super) fn default_pool_size() -> usize {
    20
}
pub(super) fn default_pool_timeout() -> f64 {
    30.0
}
pub(super) fn default_socket_mode() -> u32 {
    0o777
}
pub(super) fn default_metrics_top_n() -> usize {
    20
}
pub(super) fn default_reserve_pool_timeout() -> f64 {
    5.0
}
pub(super) fn default_connect_timeout() -> f64 {
    10.0
}
pub(super) fn default_idle_timeout() -> f64 {
    600.0
}
pub(super) fn default_server_lifetime() -> f64 {
    3600.0
}
pub(super) fn default_max_prepared() -> usize {
    200
}
pub(super) fn default_max_client_prepared() -> usize {
    10_000
}
pub(super) fn default_max_client_prepared_bytes() -> usize {
    16 << 20
}
pub(super) fn default_max_total_prepared_bytes() -> usize {
    1 << 30
}
pub(super) fn default_breakglass_pool_size() -> usize {
    2
}
pub(super) fn default_setting() -> String {
    "app.tenant_id".to_owned()
}
pub(super) fn default_tenant_column() -> String {
    "tenant_id".to_owned()
}
pub(super) fn default_directory_ttl() -> f64 {
    60.0
}
pub(super) fn default_event_log() -> String {
    "stdout".to_owned()
}
pub(super) fn default_drift_check_interval() -> f64 {
    300.0
}
pub(super) fn default_event_window() -> f64 {
    10.0
}
pub(super) fn default_events_per_session() -> u32 {
    20
}
pub(super) fn default_events_per_tenant() -> u32 {
    100
}
pub(super) fn default_events_per_window() -> u32 {
    5_000
}
