//! `Accept` and `Accept-Encoding` negotiation: any header value.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use crypto_market_exporter::server::{accepts_gzip, negotiate_format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT, value.clone());
    headers.insert(header::ACCEPT_ENCODING, value);
    let _ = negotiate_format(&headers);
    let _ = accepts_gzip(&headers);
});
