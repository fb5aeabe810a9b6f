//! The `--web.config.file` text, and `Authorization` headers against a loaded
//! config: never a panic, and exactly the right credentials get in.
#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use crypto_market_exporter::web_config::{BasicAuth, WebConfig};
use libfuzzer_sys::fuzz_target;

/// User `u`, password `p`, at bcrypt's lowest cost so the target stays fast.
fn auth() -> &'static Arc<BasicAuth> {
    static AUTH: OnceLock<Arc<BasicAuth>> = OnceLock::new();
    AUTH.get_or_init(|| {
        let hash = bcrypt::hash("p", 4).unwrap_or_default();
        let text = format!("basic_auth_users:\n  u: '{hash}'\n");
        WebConfig::parse(Path::new("/nonexistent/web.yml"), text)
            .ok()
            .and_then(|w| w.auth)
            .unwrap_or_else(|| panic!("the fixed config must load"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = WebConfig::parse(Path::new("/nonexistent/web.yml"), text.to_owned());
    let right = text
        .strip_prefix("Basic ")
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .is_some_and(|d| d == b"u:p");
    assert_eq!(auth().check(Some(data)), right, "{text:?}");
});
