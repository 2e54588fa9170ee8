//! Registering families once, on payguard's own registry: the three shapes every module's
//! metrics use, and the build information.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Registers a counter family.
pub(crate) fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let family = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}

/// Registers a histogram family with the given buckets.
pub(crate) fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> Result<HistogramVec, prometheus::Error> {
    let family = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )?;
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}

/// Registers a gauge.
pub(crate) fn gauge(
    registry: &Registry,
    name: &str,
    help: &str,
) -> Result<IntGauge, prometheus::Error> {
    let gauge = IntGauge::new(name, help)?;
    registry.register(Box::new(gauge.clone()))?;
    Ok(gauge)
}

/// `payguard_build_info`: always 1, the version a label, so dashboards can tell releases apart.
pub(super) fn build_info(registry: &Registry) -> Result<(), prometheus::Error> {
    let build = IntGauge::with_opts(
        Opts::new("payguard_build_info", "Always 1; the version is a label.")
            .const_label("version", env!("CARGO_PKG_VERSION")),
    )?;
    build.set(1);
    registry.register(Box::new(build))
}
