//! payguard: a sidecar that makes calls to a payment API safe to retry.
//!
//! The app points its Stripe base URL at payguard's proxy listener; payguard forwards each
//! request to the configured upstream over TLS. The pieces, in the order a request meets them:
//!
//! - [`server`] accepts connections (up to the bound on load) and drains them on shutdown;
//! - [`proxy`] is the request path, read top to bottom: route, refuse, buffer, admit, attempt,
//!   settle; every error becomes a response in one place, through `error`;
//! - [`route`] names the request from the config's method + path patterns;
//! - [`idempotency`] keys it, coalesces duplicates and replays completed keys;
//! - [`retry`] runs the attempts, each through the breakers and limiters (`gate`,
//!   [`ratelimit`], [`breaker`]) and the pooled rustls client (`upstream`);
//! - [`journal`] remembers keyed POSTs whose outcome may be in doubt, and [`resolver`], above
//!   the proxy, settles them through its one re-send entry point;
//! - [`profile`] names how each provider spells idempotency, retry hints and errors;
//! - `metrics` and `admin` expose what happened on a separate admin listener, and
//!   [`stats`] turns the metrics into the human retry report.
//!
//! [`config`] parses and validates the TOML file into the specs each module defines beside its
//! code. [`shared`] holds the Redis connection several replicas share state through. The
//! provider double is the `payguard-double` crate, used by the tests, benchmarks and [`demo`].
//!
//! # What is public
//!
//! Modules are `pub(crate)` unless the binary (`main.rs`, `cli/`), the integration tests, the
//! benchmarks or the fuzz targets use them: those see the crate from outside. What they use is
//! the stores and journals (conformance suites run against real Redis and PostgreSQL), the
//! config types, the server, and the retry and limiter policies the property tests drive.
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
