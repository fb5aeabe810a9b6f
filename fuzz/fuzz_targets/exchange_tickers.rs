//! Kraken, Binance and Coinbase bodies (tickers, listings, stats, candles):
//! any input parses or fails with an error, never a panic; whatever candles
//! parse go through the backfill's arithmetic.
#![no_main]

use std::collections::HashMap;

use crypto_market_exporter::backfill::series;
use crypto_market_exporter::domain::Assets;
use crypto_market_exporter::source::{Collected, binance, coinbase, kraken};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut pairs = HashMap::new();
    pairs.insert("XXBTZUSD".to_owned(), Assets::new("btc", "usd"));
    pairs.insert("BTCUSDT".to_owned(), Assets::new("btc", "usdt"));
    let _ = kraken::parse_asset_pairs(data);
    let _ = kraken::parse_ticker_into(data, &pairs, Collected::default);
    let _ = binance::parse_exchange_info(data);
    let _ = binance::parse_ticker_into(data, &pairs, Collected::default);
    let _ = coinbase::parse_products(data);
    let _ = coinbase::parse_stats(data);
    for candles in [
        kraken::parse_ohlc(data),
        binance::parse_klines(data),
        coinbase::parse_candles(data),
    ]
    .into_iter()
    .flatten()
    {
        let candles = series::merge(candles, 0, i64::MAX / 2);
        let first = candles.first().map_or(0, |c| c.start);
        let last = candles.last().map_or(0, |c| c.start) + 120;
        // At most 5,000 instants: the fuzzer's memory, not the code, bounds it.
        let times = series::instants(first, last.min(first + 5_000 * 60), 60);
        series::gauges(&candles, 60, &times, |_, _| {});
    }
});
