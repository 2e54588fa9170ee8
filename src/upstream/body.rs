//! The bodies crossing the upstream connection: the request's, watched for whether it was
//! handed over, and the answer's, which gives its connection back to the pool when read.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;

use super::pool::{H1, Pool};

/// A request body the client can send: a buffered one, or a streamed upload.
pub trait OutBody:
    Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

impl<B> OutBody for B where
    B: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

/// The handover states of a request body.
pub(super) const PENDING: u8 = 0;
const SENT: u8 = 1;
pub(super) const ABANDONED: u8 = 2;

/// A request body that records when it was first handed to the connection, and refuses to be
/// handed over once its attempt has been judged "not sent".
pub struct WatchedBody {
    pub(super) inner: UnsyncBoxBody<Bytes, std::io::Error>,
    pub(super) handover: Arc<AtomicU8>,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // The first poll hands the request over: a buffered body is one frame, and a streamed
        // one's first frame may already be on its way out.
        let claimed =
            self.handover
                .compare_exchange(PENDING, SENT, Ordering::AcqRel, Ordering::Acquire);
        if claimed == Err(ABANDONED) {
            return Poll::Ready(Some(Err(std::io::Error::other(
                "attempt abandoned before sending",
            ))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer's body from the upstream. Over HTTP/1 it holds its connection, and puts it
/// back in the pool once the body has been read to its end; dropped before that, it drops
/// the connection with it, since the rest of the answer still stands in its way.
pub struct UpstreamBody {
    inner: Incoming,
    home: Option<(H1, Arc<Pool>)>,
}

impl UpstreamBody {
    pub(super) fn new(inner: Incoming, home: Option<(H1, Arc<Pool>)>) -> UpstreamBody {
        let mut body = UpstreamBody { inner, home };
        // An answer without a body (a 204, a HEAD's) is read already.
        body.return_if_read();
        body
    }

    fn return_if_read(&mut self) {
        if self.inner.is_end_stream()
            && let Some((sender, pool)) = self.home.take()
        {
            pool.give_back(sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some((sender, pool)) = self.home.take() {
                    pool.give_back(sender);
                }
            }
            Poll::Ready(Some(Ok(_))) => self.return_if_read(),
            // A broken answer leaves its connection unusable: drop it.
            Poll::Ready(Some(Err(_))) => self.home = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
