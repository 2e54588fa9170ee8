//! The bound on load: how many connections, requests in flight and buffered request bytes one
//! payguard holds at once. Past either request bound a request is answered 503 with
//! `Retry-After` at once (`ProxyError::Overloaded`), before its body is read, so a flood of
//! large bodies costs a refusal each and never the memory to hold them. Past the connection
//! bound a new connection gets that answer and is closed.
//!
//! Semaphores and not tower's `ConcurrencyLimit`: that one queues the excess, and a sidecar
//! should shed it (the app's SDK retries a 503 with `Stripe-Should-Retry: true`), not hold
//! sockets and memory for it. Permits are taken without waiting, and held until the request's
//! answer has been built (the body stays buffered for every attempt until then).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The validated bounds of `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSpec {
    pub max_connections: usize,
    pub max_requests_in_flight: usize,
    /// Request bytes buffered at once, across every request in flight.
    pub max_buffered_bytes: usize,
}

/// Which bound a refused request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Connections,
    Requests,
    BufferedBytes,
}

impl Bound {
    /// The `bound` label of `payguard_overload_refusals_total`.
    pub fn label(self) -> &'static str {
        match self {
            Bound::Connections => "connections",
            Bound::Requests => "requests_in_flight",
            Bound::BufferedBytes => "buffered_bytes",
        }
    }
}

/// The bounds in force, shared by every request of the process (kept across reloads: a
/// changed bound needs a restart, as the listeners do).
pub struct Load {
    spec: LoadSpec,
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
}

/// What a request holds while it is in flight: its place, and the bytes of its body.
pub struct Held {
    _request: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
}

impl Load {
    pub fn new(spec: LoadSpec) -> Load {
        Load {
            spec,
            requests: Arc::new(Semaphore::new(spec.max_requests_in_flight)),
            bytes: Arc::new(Semaphore::new(spec.max_buffered_bytes)),
        }
    }

    /// A place for one more request, reserving `body` bytes for its buffer (its declared
    /// length, or the most it may buffer when it declares none); `Err` names the bound met.
    pub fn admit(&self, body: usize) -> Result<Held, Bound> {
        let request = try_take(&self.requests, 1).ok_or(Bound::Requests)?;
        let bytes = match body {
            0 => None,
            n => Some(try_take(&self.bytes, n).ok_or(Bound::BufferedBytes)?),
        };
        Ok(Held {
            _request: request,
            _bytes: bytes,
        })
    }

    /// Bytes buffered now, for the gauge.
    pub fn buffered(&self) -> usize {
        self.spec.max_buffered_bytes - self.bytes.available_permits()
    }
}

fn try_take(semaphore: &Arc<Semaphore>, n: usize) -> Option<OwnedSemaphorePermit> {
    // A reservation over the whole bound can never be granted; validation keeps the largest
    // buffered body within it.
    let n = u32::try_from(n).ok()?;
    // No permits now means refuse now: waiting is what the bound exists to avoid.
    semaphore.clone().try_acquire_many_owned(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(requests: usize, bytes: usize) -> Load {
        Load::new(LoadSpec {
            max_connections: 10,
            max_requests_in_flight: requests,
            max_buffered_bytes: bytes,
        })
    }

    #[test]
    fn requests_past_either_bound_are_refused_and_places_come_back() {
        let l = load(2, 100);
        let a = l.admit(60).unwrap();
        assert_eq!(l.admit(60).err(), Some(Bound::BufferedBytes));
        let b = l.admit(40).unwrap();
        assert_eq!(l.buffered(), 100);
        assert_eq!(l.admit(0).err(), Some(Bound::Requests));
        drop(a);
        assert_eq!(l.buffered(), 40);
        let c = l.admit(60).unwrap();
        drop((b, c));
        assert_eq!(l.buffered(), 0);
        assert!(l.admit(100).is_ok());
    }

    #[test]
    fn a_refused_byte_reservation_gives_its_request_place_back() {
        let l = load(1, 10);
        assert_eq!(l.admit(11).err(), Some(Bound::BufferedBytes));
        assert!(l.admit(10).is_ok());
    }
}
