//! The YAML config file: any text loads or fails with a one-line error.
#![no_main]

use crypto_market_exporter::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = Config::from_yaml(text)
    {
        assert!(!e.to_string().contains('\n'), "{e}");
    }
});
