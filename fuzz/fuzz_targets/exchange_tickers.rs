//! Kraken, Binance and Coinbase bodies (tickers, listings, stats): any input
//! parses or fails with an error, never a panic.
#![no_main]

use std::collections::HashMap;

use crypto_market_exporter::domain::Assets;
use crypto_market_exporter::source::{binance, coinbase, kraken};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut pairs = HashMap::new();
    pairs.insert("XXBTZUSD".to_owned(), Assets::new("btc", "usd"));
    pairs.insert("BTCUSDT".to_owned(), Assets::new("btc", "usdt"));
    let _ = kraken::parse_asset_pairs(data);
    let _ = kraken::parse_ticker(data, &pairs);
    let _ = binance::parse_exchange_info(data);
    let _ = binance::parse_ticker(data, &pairs);
    let _ = coinbase::parse_products(data);
    let _ = coinbase::parse_stats(data);
});
