//! The resolver's admin endpoints: `GET /unresolved` (the [`Listing`] as JSON) and
//! `POST /unresolved/<id>/give-up`, the only write the admin listener accepts.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;

use super::report::Listing;
use crate::journal::{Entry, GiveUp, State, short_id};
use crate::proxy::ProxyState;

/// Answers `request` when its path is under `/unresolved`; `None` otherwise.
pub async fn handle<B>(request: &Request<B>, proxy: &ProxyState) -> Option<Response<Full<Bytes>>> {
    let path = request.uri().path();
    let rest = path.strip_prefix("/unresolved")?;
    let method = request.method();
    Some(match (rest, method) {
        ("" | "/", &Method::GET | &Method::HEAD) => match proxy.journal().list().await {
            Ok(entries) => json(
                StatusCode::OK,
                &Listing::new(&entries, proxy.journal().now_ms()),
            ),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n")),
        },
        ("" | "/", _) => text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n"),
        (rest, &Method::POST) => match rest
            .strip_prefix('/')
            .and_then(|r| r.strip_suffix("/give-up"))
        {
            Some(id) => give_up(proxy, id).await,
            None => text(StatusCode::NOT_FOUND, "try POST /unresolved/<id>/give-up\n"),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "try GET /unresolved or POST /unresolved/<id>/give-up\n",
        ),
    })
}

/// Gives up on the entry whose short id starts with `wanted` (at least 4 characters).
async fn give_up(proxy: &ProxyState, wanted: &str) -> Response<Full<Bytes>> {
    let journal = proxy.journal();
    if wanted.len() < 4 {
        return text(
            StatusCode::BAD_REQUEST,
            "give at least 4 characters of the id\n",
        );
    }
    let entries = match journal.list().await {
        Ok(entries) => entries,
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n")),
    };
    let matches: Vec<_> = entries
        .iter()
        .filter(|(id, _)| short_id(id).starts_with(wanted))
        .collect();
    let (id, entry) = match matches.as_slice() {
        [] => return text(StatusCode::NOT_FOUND, &format!("no entry {wanted}\n")),
        [one] => one,
        _ => {
            return text(
                StatusCode::CONFLICT,
                &format!("{wanted} matches several entries\n"),
            );
        }
    };
    if entry.state.finished() {
        return text(
            StatusCode::CONFLICT,
            &format!("{wanted} is already {}\n", entry.state.label()),
        );
    }
    let now = journal.now_ms();
    // Durable: an operator's decision must survive a crash, or the resend would come back.
    let done = journal
        .modify(*id, true, move |e: &mut Entry| {
            let live = !e.state.finished();
            if live {
                e.finish(
                    State::GaveUp {
                        reason: GiveUp::Operator,
                    },
                    now,
                );
            }
            live
        })
        .await;
    match done {
        Ok(Some(e)) if matches!(e.state, State::GaveUp { .. }) => {
            tracing::warn!(
                route = e.route,
                key = e.key,
                "an operator gave up on an unresolved request"
            );
            crate::journal::finished(proxy.metrics(), proxy.webhook(), id, &e);
            super::task::refresh(proxy).await;
            json(StatusCode::OK, &Listing::new(&[(*id, e)], now).entries)
        }
        Ok(_) => text(
            StatusCode::CONFLICT,
            &format!("{wanted} finished meanwhile\n"),
        ),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n")),
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    // Plain strings and numbers always serialise.
    let body = serde_json::to_string_pretty(value).unwrap_or_default() + "\n";
    let mut response = text(status, &body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
