//! The route table as the request path uses it: each route beside the metric series its
//! requests feed ([`RouteSeries`]), so matching a request finds both, and its count,
//! duration, attempts and result are not looked up by label on the way.

use std::ops::Deref;

use http::Method;

use crate::metrics::{Metrics, RouteSeries};
use crate::route::{RouteSpec, RouteTable};

/// The routes, each with its series, and the default route with its own.
pub(super) struct Routes {
    table: RouteTable,
    /// In the table's order.
    series: Vec<RouteSeries>,
    default: RouteSeries,
}

/// A matched route: its settings (what `Deref` gives) and its series.
#[derive(Clone, Copy)]
pub struct Routed<'a> {
    spec: &'a RouteSpec,
    series: &'a RouteSeries,
}

impl<'a> Routed<'a> {
    /// The route's settings, for as long as the table lives.
    pub fn spec(self) -> &'a RouteSpec {
        self.spec
    }

    /// The series its requests feed.
    pub fn series(self) -> &'a RouteSeries {
        self.series
    }
}

impl Deref for Routed<'_> {
    type Target = RouteSpec;

    fn deref(&self) -> &RouteSpec {
        self.spec
    }
}

impl Routes {
    /// `table`'s routes with their series in `metrics` (kept across reloads, so a route's
    /// counters continue).
    pub(super) fn new(table: RouteTable, metrics: &Metrics) -> Routes {
        Routes {
            series: table
                .routes()
                .iter()
                .map(|r| metrics.route(&r.name))
                .collect(),
            default: metrics.route(&table.default_route().name),
            table,
        }
    }

    /// The route [`RouteTable::lookup`] finds, with its series.
    pub(super) fn lookup(&self, method: &Method, path: &str) -> Routed<'_> {
        let (at, spec) = self.table.lookup(method, path);
        // Built in the table's order, so a configured route always has its own.
        let series = at.and_then(|i| self.series.get(i)).unwrap_or(&self.default);
        Routed { spec, series }
    }
}
