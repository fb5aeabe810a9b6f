//! Cryptowatch `/markets/summaries`, `/pairs` and OHLC bodies: parse, admit and
//! render whatever comes, never panicking; the admission never keeps more
//! markets than the cap.
#![no_main]

use std::collections::HashMap;
use std::sync::Arc;

use crypto_market_exporter::admission::Admission;
use crypto_market_exporter::exposition::MarketFragments;
use crypto_market_exporter::filter::MarketFilter;
use crypto_market_exporter::source::cryptowatch::{parse_ohlc, parse_page, parse_pairs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_pairs(data);
    let _ = parse_ohlc(data, 60);
    let filter = Arc::new(MarketFilter {
        max_markets: 50,
        ..MarketFilter::default()
    });
    if let Ok((admission, _, _)) =
        parse_page(data, &HashMap::new(), || Admission::new(filter.clone()))
    {
        let admitted = admission.finish();
        assert!(admitted.markets.len() <= 50);
        let _ = MarketFragments::render(&admitted.markets, 4);
    }
});
