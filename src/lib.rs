//! payguard: a sidecar that makes calls to a payment API safe to retry.
//!
//! The app points its Stripe base URL at payguard's proxy listener; payguard forwards each
//! request to the configured upstream over TLS. The pieces, in the order a request meets them:
//!
//! - [`server`] accepts connections and drains them on shutdown;
//! - [`proxy`] is the request path, read top to bottom: route, refuse, buffer, forward, record;
//! - [`route`] names the request from the config's method + path patterns;
//! - [`headers`] decides which headers cross the hop;
//! - [`upstream`] is the pooled rustls client, one per configured upstream;
//! - [`profile`] names how each provider spells idempotency, retry hints and errors;
//! - [`error`] holds the one error enum and its one mapping to Stripe-shaped responses;
//! - [`metrics`] and [`admin`] expose what happened on a separate admin listener, and
//!   [`stats`] turns the metrics into the human retry report.
//!
//! [`resolver`] journals keyed POSTs and settles those left without a definitive answer.
//! [`shared`] holds the Redis connection that several replicas share state through.
//!
//! [`config`] loads and validates the TOML file everything above is built from. [`double`] is a
//! faithful test double of the provider, used by the tests, the benchmarks and [`demo`].
//!
//! # Layers
//!
//! A module imports only from layers below its own (`tests/layers.rs` reads the sources and
//! fails on an import that points up). From the bottom:
//!
//! 1. `body`, `headers`, `profile`, `crashpoints`, `breaker`, `load`
//! 2. `admin_client`, `telemetry`
//! 3. `retry`, `shared`
//! 4. `ratelimit`
//! 5. `metrics`, `error`
//! 6. `inbound`, `upstream`, `gate`
//! 7. `idempotency`
//! 8. `route`
//! 9. `journal`
//! 10. `config`
//! 11. `proxy`
//! 12. `reload`, `stats`
//! 13. `resolver`
//! 14. `admin`, `background`
//! 15. `server`
//! 16. `demo`
#![forbid(unsafe_code)]

pub(crate) mod admin;
pub mod admin_client;
pub(crate) mod background;
pub(crate) mod body;
pub mod breaker;
pub mod config;
pub mod crashpoints;
pub mod demo;
pub(crate) mod error;
pub(crate) mod gate;
pub(crate) mod headers;
pub mod idempotency;
pub(crate) mod inbound;
pub mod journal;
pub(crate) mod load;
pub(crate) mod metrics;
pub mod profile;
pub mod proxy;
pub mod ratelimit;
pub(crate) mod reload;
pub mod resolver;
pub mod retry;
pub mod route;
pub mod server;
pub mod shared;
pub mod stats;
pub mod telemetry;
pub(crate) mod upstream;
