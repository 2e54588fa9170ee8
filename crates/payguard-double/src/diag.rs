//! Diagnostic endpoints under `/_double/`, which Stripe does not have. They let the proxy's
//! pass-through tests see exactly what arrived (`echo`), move big bodies (`large`) and hold a
//! request open (`slow`). They need no API key and have no idempotency layer.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::json;

use super::app::SeenRequest;
use super::dialect::Provider;
use super::reply::{self, ApiError, Reply, Source};

/// Answers `/_double/echo`, `/_double/large` and `/_double/slow`, with any method; errors
/// are spelled in the dialect, like the API's.
pub(crate) async fn handle(request: &SeenRequest, dialect: Provider) -> Reply {
    answer(request)
        .await
        .unwrap_or_else(|err| dialect.error(err))
}

async fn answer(request: &SeenRequest) -> Result<Reply, ApiError> {
    Ok(match request.path.as_str() {
        "/_double/echo" => echo(request),
        "/_double/large" => {
            let bytes = query_number(request, "bytes")?;
            let pattern = Source::Pattern(bytes);
            Reply::new(StatusCode::OK, "application/octet-stream", pattern)
        }
        "/_double/slow" => {
            let ms = query_number(request, "ms")?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Reply::json(StatusCode::OK, &json!({ "slept_ms": ms }))
        }
        other => {
            let message = format!("Unknown diagnostic endpoint {other}: try echo, large or slow.");
            let code = Some("resource_missing");
            return Err(reply::error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                code,
                message,
            ));
        }
    })
}

/// The request as JSON, and every `x-echo-*` request header copied onto the response.
fn echo(request: &SeenRequest) -> Reply {
    let mut headers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, value) in &request.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers.entry(name.as_str()).or_default().push(value);
    }
    let body = json!({
        "method": request.method.as_str(),
        "path": request.path,
        "query": request.query,
        "headers": headers,
        "body": String::from_utf8_lossy(&request.body),
    });
    let mut reply = Reply::json(StatusCode::OK, &body);
    let echoed = request
        .headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-echo-"));
    for (name, value) in echoed {
        reply
            .headers
            .push((HeaderName::clone(name), HeaderValue::clone(value)));
    }
    reply
}

/// A required non-negative integer from the query string, or a 400 naming it.
fn query_number(request: &SeenRequest, name: &str) -> Result<u64, ApiError> {
    let query = request.query.as_deref().unwrap_or("");
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='));
    let Some(raw) = raw else {
        return Err(reply::invalid_param(
            name,
            "parameter_missing",
            format!("Missing required param: {name}."),
        ));
    };
    raw.parse::<u64>().map_err(|_| {
        reply::invalid_param(
            name,
            "parameter_invalid_integer",
            format!("Invalid integer: {raw}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{HeaderMap, Method};
    use serde_json::Value;

    use super::*;

    fn json_of(reply: &Reply) -> Value {
        match &reply.body {
            Source::Bytes(bytes) => serde_json::from_slice(bytes).unwrap(),
            Source::Pattern(_) => panic!("not JSON"),
        }
    }

    async fn handle_stripe(request: &SeenRequest) -> Reply {
        handle(request, Provider::Stripe).await
    }

    fn request(path: &str, query: Option<&str>) -> SeenRequest {
        let mut headers = HeaderMap::new();
        headers.append("x-echo-trace", HeaderValue::from_static("abc"));
        headers.append("accept", HeaderValue::from_static("a"));
        headers.append("accept", HeaderValue::from_static("b"));
        SeenRequest {
            method: Method::PUT,
            path: path.into(),
            query: query.map(Into::into),
            headers,
            body: Bytes::from_static(b"x=1\xff"),
            received: std::time::Instant::now(),
        }
    }

    #[tokio::test]
    async fn echo_describes_the_request() {
        let reply = handle_stripe(&request("/_double/echo", Some("a=1"))).await;
        assert_eq!(reply.header("x-echo-trace").unwrap(), "abc");
        let json = json_of(&reply);
        assert_eq!(json["method"], "PUT");
        assert_eq!(json["query"], "a=1");
        assert_eq!(json["headers"]["accept"], json!(["a", "b"]));
        assert_eq!(json["body"], "x=1\u{fffd}");
    }

    #[tokio::test(start_paused = true)]
    async fn large_and_slow_read_their_numbers() {
        let reply = handle_stripe(&request("/_double/large", Some("x=1&bytes=1000"))).await;
        assert!(matches!(reply.body, Source::Pattern(1000)));
        let started = tokio::time::Instant::now();
        let reply = handle_stripe(&request("/_double/slow", Some("ms=1500"))).await;
        assert_eq!(reply.status, 200);
        assert_eq!(started.elapsed(), Duration::from_millis(1500));
        assert_eq!(
            handle_stripe(&request("/_double/slow", Some("ms=x")))
                .await
                .status,
            400
        );
        assert_eq!(
            handle_stripe(&request("/_double/large", None)).await.status,
            400
        );
        assert_eq!(
            handle_stripe(&request("/_double/nope", None)).await.status,
            404
        );
    }
}
