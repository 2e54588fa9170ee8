//! `[server]`'s bound on load: connections, requests in flight and buffered request bytes
//! ([`crate::load`]). The defaults sit far above what one app's sidecar sees (an SDK opens a
//! handful of connections) and far below what exhausts a pod: 64 MiB of bodies at most.

use super::RawServer;
use crate::load::LoadSpec;

pub(super) fn default_max_connections() -> usize {
    1024
}
pub(super) fn default_max_requests_in_flight() -> usize {
    512
}
pub(super) fn default_max_buffered_bytes() -> usize {
    64 << 20
}

/// The most any bound may be: the semaphores behind them count up to `u32::MAX`.
const MAX_BOUND: usize = u32::MAX as usize;

pub(super) fn load(raw: &RawServer, issue: &mut impl FnMut(String, String)) -> LoadSpec {
    for (key, value) in [
        ("max_connections", raw.max_connections),
        ("max_requests_in_flight", raw.max_requests_in_flight),
        ("max_buffered_bytes", raw.max_buffered_bytes),
    ] {
        if value == 0 || value > MAX_BOUND {
            issue(
                format!("server.{key}"),
                format!("must be from 1 to {MAX_BOUND}"),
            );
        }
    }
    if raw.max_buffered_bytes < raw.max_request_body_bytes {
        issue(
            "server.max_buffered_bytes".into(),
            format!(
                "must be at least server.max_request_body_bytes ({}): a body that large could never be buffered",
                raw.max_request_body_bytes
            ),
        );
    }
    LoadSpec {
        max_connections: raw.max_connections,
        max_requests_in_flight: raw.max_requests_in_flight,
        max_buffered_bytes: raw.max_buffered_bytes,
    }
}
