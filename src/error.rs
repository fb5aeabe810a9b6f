//! Why a poll failed: [`SourceError`], with a bounded [`SourceError::reason`] for the
//! failure counter's label. Shared by the sources, the HTTP client and the
//! self-metrics, so it depends on none of them.

use std::time::Duration;

/// Why a poll failed. [`SourceError::reason`] is the bounded metric label.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("rate limited by upstream (HTTP {status}){}", retry_after_text(.retry_after))]
    RateLimited {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("upstream answered HTTP {status}: {body}")]
    HttpStatus { status: u16, body: String },
    #[error("response body exceeds the {limit}-byte limit")]
    BodyTooLarge { limit: u64 },
    #[error("reading the response body failed: {0}")]
    Body(String),
    #[error("invalid response: {0}")]
    Decode(String),
    #[error("upstream reported an error: {0}")]
    Api(String),
    #[error("request failed: {0}")]
    Request(String),
    /// A task of the exporter's own failed (a panic while processing an answer):
    /// a bug, not a bad answer, so it gets its own reason.
    #[error("internal error: {0}")]
    Internal(String),
    /// A well-formed answer with no markets, or far fewer than the last good
    /// poll: an upstream glitch, not a market event, so the last data stays.
    #[error("{}", collapsed_text(*.markets, *.previous, *.min_ratio))]
    Collapsed {
        markets: usize,
        previous: usize,
        min_ratio: f64,
    },
}

fn collapsed_text(markets: usize, previous: usize, min_ratio: f64) -> String {
    if markets == 0 {
        "upstream answered with no markets at all".to_owned()
    } else {
        format!(
            "upstream answered with {markets} markets, under {min_ratio} of the last good poll's {previous} (--poll.min-markets-ratio)"
        )
    }
}

fn retry_after_text(d: &Option<Duration>) -> String {
    match d {
        Some(d) => format!(", Retry-After {}s", d.as_secs()),
        None => ", no Retry-After".to_owned(),
    }
}

impl SourceError {
    /// Every reason label, so counters can start at 0 instead of appearing late.
    pub const REASONS: [&'static str; 11] = [
        "timeout",
        "connect",
        "rate_limited",
        "http_status",
        "body_too_large",
        "body_read",
        "invalid_response",
        "api_error",
        "request",
        "collapsed",
        "internal",
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::Timeout(_) => "timeout",
            SourceError::Connect(_) => "connect",
            SourceError::RateLimited { .. } => "rate_limited",
            SourceError::HttpStatus { .. } => "http_status",
            SourceError::BodyTooLarge { .. } => "body_too_large",
            SourceError::Body(_) => "body_read",
            SourceError::Decode(_) => "invalid_response",
            SourceError::Api(_) => "api_error",
            SourceError::Request(_) => "request",
            SourceError::Collapsed { .. } => "collapsed",
            SourceError::Internal(_) => "internal",
        }
    }

    /// The same error with every occurrence of `secret` in its text replaced:
    /// an upstream that echoes the API key in an error body must not put it
    /// into the logs.
    pub fn redact(self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let clean = |s: String| s.replace(secret, "<redacted>");
        match self {
            SourceError::Connect(s) => SourceError::Connect(clean(s)),
            SourceError::HttpStatus { status, body } => SourceError::HttpStatus {
                status,
                body: clean(body),
            },
            SourceError::Body(s) => SourceError::Body(clean(s)),
            SourceError::Decode(s) => SourceError::Decode(clean(s)),
            SourceError::Api(s) => SourceError::Api(clean(s)),
            SourceError::Request(s) => SourceError::Request(clean(s)),
            other => other,
        }
    }

    /// How long upstream asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
