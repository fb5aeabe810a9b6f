//! Parse cost of each live source's full response. Figures and commands:
//! docs/performance.md.
//!
//! cargo bench --bench sources
//!
//! The full Binance and Kraken recordings have no stated license, so the repo
//! carries only excerpts; the benches read the full files from the workspace's
//! `shared/fixtures/` (or `CME_SHARED_FIXTURES`) and skip when absent.
//! Kraken's all-pairs Ticker and Coinbase's bodies were never recorded: they
//! are generated here in the documented format, at full size.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code

use std::collections::HashMap;
use std::path::PathBuf;

use crypto_market_exporter::domain::Assets;
use crypto_market_exporter::source::{Collected, binance, coinbase, kraken};

fn main() {
    divan::main();
}

fn shared(path: &str) -> Option<Vec<u8>> {
    let dir = std::env::var_os("CME_SHARED_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures"))
        });
    let full = dir.join(path);
    match std::fs::read(&full) {
        Ok(body) => Some(body),
        Err(e) => {
            eprintln!("skipping: {}: {e}", full.display());
            None
        }
    }
}

/// Every symbol of the recording, split on its quote asset the way
/// exchangeInfo would (the recording itself has no exchangeInfo).
fn binance_symbols(body: &[u8]) -> HashMap<String, Assets> {
    let rows: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
    const QUOTES: [&str; 12] = [
        "USDT", "FDUSD", "TUSD", "USDC", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "DAI",
    ];
    rows.iter()
        .filter_map(|r| r["symbol"].as_str())
        .map(|s| {
            let quote = QUOTES
                .iter()
                .find(|q| s.ends_with(*q))
                .copied()
                .unwrap_or("X");
            let base = s.strip_suffix(quote).unwrap_or(s);
            (s.to_owned(), Assets::new(base, quote))
        })
        .collect()
}

/// The 1.2 MB, 2,429-symbol `GET /api/v3/ticker/24hr` of 2024-01-05. Target ≤ 5 ms.
#[divan::bench]
fn binance_ticker_all(bencher: divan::Bencher) {
    let Some(body) = shared("binance/ticker_24hr.all.2024-01-05.json") else {
        return;
    };
    let symbols = binance_symbols(&body);
    bencher
        .counter(divan::counter::BytesCount::new(body.len()))
        .bench(|| {
            binance::parse_ticker_into(divan::black_box(&body), &symbols, Collected::default)
                .unwrap()
        });
}

/// The 2.7 MB, 1,434-pair AssetPairs listing (parsed hourly).
#[divan::bench]
fn kraken_asset_pairs_all(bencher: divan::Bencher) {
    let Some(body) = shared("kraken/asset_pairs.all.2026-01.json") else {
        return;
    };
    bencher
        .counter(divan::counter::BytesCount::new(body.len()))
        .bench(|| kraken::parse_asset_pairs(divan::black_box(&body)).unwrap());
}

/// An all-pairs Ticker with one entry per recorded AssetPairs key, in the
/// shape of the recorded single-pair ticker.
#[divan::bench]
fn kraken_ticker_all(bencher: divan::Bencher) {
    let Some(pairs_body) = shared("kraken/asset_pairs.all.2026-01.json") else {
        return;
    };
    let pairs = kraken::parse_asset_pairs(&pairs_body).unwrap();
    let listing: serde_json::Value = serde_json::from_slice(&pairs_body).unwrap();
    let keys: Vec<&String> = listing["result"].as_object().unwrap().keys().collect();
    let mut body = String::from(r#"{"error":[],"result":{"#);
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let p = 1.0 + i as f64 * 0.37;
        body.push_str(&format!(
            r#""{key}":{{"a":["{p:.5}","1","1.000"],"b":["{p:.5}","1","1.000"],"c":["{p:.5}","0.05016745"],"v":["175.73904925","218.16099893"],"p":["{p:.5}","{p:.5}"],"t":[6682,9276],"l":["{p:.5}","{p:.5}"],"h":["{p:.5}","{p:.5}"],"o":"{p:.5}"}}"#
        ));
    }
    body.push_str("}}");
    let body = body.into_bytes();
    bencher
        .counter(divan::counter::BytesCount::new(body.len()))
        .bench(|| {
            kraken::parse_ticker_into(divan::black_box(&body), &pairs, Collected::default).unwrap()
        });
}

/// `GET /products` with 800 products, about what Coinbase lists.
#[divan::bench]
fn coinbase_products(bencher: divan::Bencher) {
    let mut body = String::from("[");
    for i in 0..800 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"id":"T{i}-USD","base_currency":"T{i}","quote_currency":"USD","quote_increment":"0.01","base_increment":"0.00000001","display_name":"T{i}/USD","min_market_funds":"1","margin_enabled":false,"post_only":false,"limit_only":false,"cancel_only":false,"status":"online","status_message":"","trading_disabled":false,"fx_stablecoin":false,"max_slippage_percentage":"0.02000000","auction_mode":false,"high_bid_limit_percentage":""}}"#
        ));
    }
    body.push(']');
    let body = body.into_bytes();
    bencher
        .counter(divan::counter::BytesCount::new(body.len()))
        .bench(|| coinbase::parse_products(divan::black_box(&body)).unwrap());
}

/// One `GET /products/{id}/stats`: a full refresh parses one per product.
#[divan::bench]
fn coinbase_stats(bencher: divan::Bencher) {
    let body = br#"{"open":"77310.01","high":"81402.12","low":"76930.00","last":"81250.37","volume":"21034.81273011","volume_30day":"512034.11820391"}"#;
    bencher.bench(|| coinbase::parse_stats(divan::black_box(body)).unwrap());
}
