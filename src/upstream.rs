//! Outbound HTTP shared by the network sources: one client per source with its
//! own governor quota, timeouts and body cap, and the mapping of transport
//! failures into [`SourceError`]s.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::error::SourceError;
use crate::self_metrics::SourceMetrics;

/// A successful (2xx) upstream response with its whole body.
#[derive(Debug)]
pub struct Response {
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Outbound HTTP settings of one source.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_body_size: u64,
    /// Governor quota: one request per `period`, up to `burst` back to back.
    pub rate_limit_period: Duration,
    pub rate_limit_burst: NonZeroU32,
}

/// One source's HTTP client, rate limiter and limits.
#[derive(Debug)]
pub struct Upstream {
    client: reqwest::Client,
    limiter: DefaultDirectRateLimiter,
    timeout: Duration,
    max_body_size: u64,
    metrics: Arc<SourceMetrics>,
}

impl Upstream {
    pub fn new(http: &HttpConfig, metrics: Arc<SourceMetrics>) -> Result<Self, SourceError> {
        // reqwest is built without a bundled crypto provider so that the tree
        // carries ring only; installing it twice is harmless, hence the `let _`.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!(
                "crypto-market-exporter/",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(http.connect_timeout)
            .timeout(http.timeout)
            .redirect(reqwest::redirect::Policy::custom(same_host_redirects))
            .build()
            .map_err(|e| SourceError::Request(format!("cannot build HTTP client: {e}")))?;
        let quota = Quota::with_period(http.rate_limit_period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(http.rate_limit_burst);
        Ok(Self {
            client,
            limiter: RateLimiter::direct(quota),
            timeout: http.timeout,
            max_body_size: http.max_body_size,
            metrics,
        })
    }

    /// GETs `url` after waiting for the rate limiter, and reads the body
    /// under the size cap. Non-2xx statuses become errors.
    pub async fn get(&self, url: &str, headers: HeaderMap) -> Result<Response, SourceError> {
        let waited = Instant::now();
        self.limiter.until_ready().await;
        self.metrics.add_limiter_wait(waited.elapsed());

        let started = Instant::now();
        let result = self.send(url, headers).await;
        self.metrics.observe_request(started.elapsed());
        result
    }

    async fn send(&self, url: &str, headers: HeaderMap) -> Result<Response, SourceError> {
        let mut resp = self
            .client
            .get(url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let status = resp.status();
        // 418 is Binance's "this IP is banned for a while", sent to clients
        // that ignored its 429s: both mean "wait as long as Retry-After says".
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.as_u16() == 418 {
            let retry_after = retry_after(resp.headers(), SystemTime::now());
            return Err(SourceError::RateLimited {
                status: status.as_u16(),
                retry_after,
            });
        }
        if let Some(len) = resp.content_length()
            && len > self.max_body_size
        {
            return Err(SourceError::BodyTooLarge {
                limit: self.max_body_size,
            });
        }
        // The chunks are kept as they come and joined once at the end: a
        // buffer grown by doubling would hold up to three times the body
        // while reallocating; this holds two, and only at the join.
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut total: u64 = 0;
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.classify_body(e))? {
            total += chunk.len() as u64;
            if total > self.max_body_size {
                return Err(SourceError::BodyTooLarge {
                    limit: self.max_body_size,
                });
            }
            chunks.push(chunk);
        }
        let body = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.swap_remove(0),
            _ => {
                let mut joined = BytesMut::with_capacity(usize::try_from(total).unwrap_or(0));
                for chunk in chunks.drain(..) {
                    joined.extend_from_slice(&chunk);
                }
                joined.freeze()
            }
        };
        if !status.is_success() {
            return Err(SourceError::HttpStatus {
                status: status.as_u16(),
                body: excerpt(&body),
            });
        }
        Ok(Response {
            headers: resp.headers().clone(),
            body,
        })
    }

    fn classify(&self, e: reqwest::Error) -> SourceError {
        if e.is_timeout() {
            SourceError::Timeout(self.timeout)
        } else if e.is_connect() {
            SourceError::Connect(error_chain(&e))
        } else {
            SourceError::Request(error_chain(&e))
        }
    }

    fn classify_body(&self, e: reqwest::Error) -> SourceError {
        if e.is_timeout() {
            SourceError::Timeout(self.timeout)
        } else {
            SourceError::Body(error_chain(&e))
        }
    }
}

/// Most redirects to follow in one request.
const MAX_REDIRECTS: usize = 5;

/// Follows a redirect only to the host the request was sent to (an upgrade
/// from http to https allowed): reqwest strips `Authorization` and cookies on
/// a cross-origin redirect but not a custom key header such as Cryptowatch's
/// `X-CW-API-Key`, which would otherwise be handed to whatever host a
/// compromised or misconfigured upstream names. Point `--<source>.url` at the
/// final host instead.
fn same_host_redirects(attempt: reqwest::redirect::Attempt<'_>) -> reqwest::redirect::Action {
    let Some(first) = attempt.previous().first() else {
        return attempt.follow();
    };
    let next = attempt.url();
    let same_host = next.host_str() == first.host_str();
    let same_port = next.port_or_known_default() == first.port_or_known_default()
        || (first.scheme() == "http" && next.scheme() == "https" && next.port().is_none());
    let no_downgrade = !(first.scheme() == "https" && next.scheme() == "http");
    if !(same_host && same_port && no_downgrade) {
        let refused = format!(
            "redirect from {} to another host refused ({}): set the source's URL to the host that serves it",
            first.origin().ascii_serialization(),
            next.origin().ascii_serialization()
        );
        return attempt.error(refused);
    }
    if attempt.previous().len() > MAX_REDIRECTS {
        return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
    }
    attempt.follow()
}

/// reqwest's top-level message ("error sending request") hides the cause;
/// the log line needs the whole chain, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        cur = inner.source();
    }
    out
}

/// The first 200 characters of a body, on one line, for error messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(800)]);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        out.push('…');
    }
    if out.is_empty() {
        "(empty body)".to_owned()
    } else {
        out
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
/// Absurd values are capped at a day so a typo upstream cannot stop polling for good.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    const CAP: Duration = Duration::from_secs(86_400);
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(delay.min(CAP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers("120"), now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&later), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&headers(&past), now), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&headers("999999999"), now),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn excerpt_is_one_bounded_line() {
        assert_eq!(
            excerpt(b"<html>\n <body>Bad   Gateway</body>\n</html>"),
            "<html> <body>Bad Gateway</body> </html>"
        );
        assert_eq!(excerpt(b""), "(empty body)");
        assert_eq!(excerpt(&[b'x'; 1000]).chars().count(), 201);
    }
}
