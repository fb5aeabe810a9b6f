//! The HTTP side: `/metrics` (or the configured path), a landing page, and
//! the `/-/healthy` and `/-/ready` probes. Handlers only read the published
//! [`Exposition`]; no scrape ever triggers upstream work.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::exposition::Format;
use crate::state::Shared;
use crate::web_config::BasicAuth;

#[derive(Debug, Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub telemetry_path: String,
    /// `basic_auth_users` of `--web.config.file`: every path needs them, as
    /// with exporter-toolkit.
    pub auth: Option<Arc<BasicAuth>>,
    /// `http_server_config.headers`, added to every response.
    pub headers: Arc<[(HeaderName, HeaderValue)]>,
}

pub fn router(state: AppState) -> Router {
    let guarded = state.auth.is_some() || !state.headers.is_empty();
    let router = Router::new()
        .route("/", get(landing))
        .route(&state.telemetry_path, get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .fallback(not_found);
    let router = if guarded {
        router.layer(axum::middleware::from_fn_with_state(state.clone(), guard))
    } else {
        router
    };
    router.with_state(state)
}

/// Basic auth (when configured) before any handler, and the configured
/// headers on every response, 401s included.
async fn guard(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = match &state.auth {
        Some(auth) => {
            let auth = auth.clone();
            let given = request
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec());
            // bcrypt takes tens of milliseconds: off the async workers.
            let ok = tokio::task::spawn_blocking(move || auth.check(given.as_deref()))
                .await
                .unwrap_or(false);
            if ok {
                next.run(request).await
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Basic")],
                    "Unauthorized\n",
                )
                    .into_response()
            }
        }
        None => next.run(request).await,
    };
    for (name, value) in state.headers.iter() {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// OpenMetrics when the client asks for it (Prometheus does), the classic
/// text format otherwise (curl, older scrapers, promtool).
pub fn negotiate_format(headers: &HeaderMap) -> Format {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok());
    for value in accept {
        for part in value.split(',') {
            let mut params = part.split(';').map(str::trim);
            if params.next() == Some("application/openmetrics-text") && !params.any(is_q_zero) {
                return Format::OpenMetrics;
            }
        }
    }
    Format::Text
}

/// Whether the client accepts gzip (and has not refused it with `q=0`).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|value| {
            value.split(',').any(|part| {
                let mut params = part.split(';').map(str::trim);
                matches!(params.next(), Some("gzip" | "x-gzip" | "*")) && !params.any(is_q_zero)
            })
        })
}

fn is_q_zero(param: &str) -> bool {
    param
        .strip_prefix("q=")
        .and_then(|q| q.trim().parse::<f32>().ok())
        .is_some_and(|q| q == 0.0)
}

async fn metrics(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let slice = match crate::shard::parse_query(uri.query(), state.shared.shards()) {
        Ok(crate::shard::Request::All) => None,
        Ok(crate::shard::Request::Slice(i)) => Some(i),
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let format = negotiate_format(&headers);
    let exposition = state.shared.exposition();
    let vary = (
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if accepts_gzip(&headers) {
        let encoding = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        (
            [content_type, encoding, vary],
            Body::new(exposition.gzip_body(format, slice)),
        )
            .into_response()
    } else {
        (
            [content_type, vary],
            Body::new(exposition.body(format, slice)),
        )
            .into_response()
    }
}

async fn landing(State(state): State<AppState>) -> Html<String> {
    let path = html_escape(&state.telemetry_path);
    Html(format!(
        "<!DOCTYPE html>\n<html><head><title>Crypto Market Exporter</title></head>\n<body>\n\
         <h1>Crypto Market Exporter</h1>\n<p>Version {}</p>\n<ul>\n\
         <li><a href=\"{path}\">{path}</a>: metrics</li>\n\
         <li><a href=\"/-/healthy\">/-/healthy</a>: liveness</li>\n\
         <li><a href=\"/-/ready\">/-/ready</a>: readiness (503 until the first successful poll)</li>\n\
         </ul>\n</body></html>\n",
        env!("CARGO_PKG_VERSION")
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn healthy() -> &'static str {
    "Healthy.\n"
}

async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.shared.ready() {
        (StatusCode::OK, "Ready.\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: no successful poll yet.\n",
        )
    }
}

async fn not_found(uri: axum::http::Uri) -> (StatusCode, String) {
    (
        StatusCode::NOT_FOUND,
        format!("404 not found: {}\n", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn format_negotiation() {
        let prom = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(
            negotiate_format(&headers(header::ACCEPT, prom)),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate_format(&headers(header::ACCEPT, "text/plain")),
            Format::Text
        );
        assert_eq!(
            negotiate_format(&headers(
                header::ACCEPT,
                "application/openmetrics-text; q=0"
            )),
            Format::Text
        );
        assert_eq!(negotiate_format(&HeaderMap::new()), Format::Text);
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(&headers(header::ACCEPT_ENCODING, "gzip")));
        assert!(accepts_gzip(&headers(
            header::ACCEPT_ENCODING,
            "deflate, gzip;q=1.0, *;q=0.5"
        )));
        assert!(!accepts_gzip(&headers(header::ACCEPT_ENCODING, "gzip;q=0")));
        assert!(!accepts_gzip(&headers(header::ACCEPT_ENCODING, "identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
