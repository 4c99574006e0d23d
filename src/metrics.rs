//! Metric updates from the data path (the `metrics` facade; exported by the admin endpoint).

/// A client connection was accepted.
pub fn client_connected() {
    metrics::gauge!("tenantgate_client_connections").increment(1.0);
}

/// A client connection ended.
pub fn client_disconnected() {
    metrics::gauge!("tenantgate_client_connections").decrement(1.0);
}

/// The tenant injection failed upstream (the statement did not run).
pub fn injection_failed() {
    metrics::counter!("tenantgate_injection_failures_total").increment(1);
}
