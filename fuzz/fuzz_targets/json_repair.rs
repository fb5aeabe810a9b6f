//! The repair of bodies JSON cannot hold: never panics, and what it returns
//! is valid UTF-8.
#![no_main]

use crypto_market_exporter::source::repair::repair;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(fixed) = repair(data) {
        assert!(std::str::from_utf8(&fixed).is_ok());
    }
});
