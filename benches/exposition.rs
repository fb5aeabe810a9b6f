//! Per-poll and per-scrape costs on the real 14,462-market Cryptowatch
//! recording. Figures and commands: docs/performance.md.
//!
//! cargo bench --bench exposition

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code

use std::collections::HashMap;

use crypto_market_exporter::admission::Admission;
use crypto_market_exporter::domain::Market;
use crypto_market_exporter::exposition::{Exposition, Format, MarketFragments};
use crypto_market_exporter::self_metrics::{self, SourceMetrics};
use crypto_market_exporter::source::SourceKind;
use crypto_market_exporter::source::cryptowatch::{parse, parse_page};

fn main() {
    divan::main();
}

fn body() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cryptowatch/markets_summaries.2023-08-19.json"
    );
    std::fs::read(path).unwrap()
}

/// Parse, validate, filter, dedup, cap and sort, entry by entry as the
/// poller does: the new snapshot of markets.
fn snapshot(body: &[u8]) -> Vec<Market> {
    let (admission, _, _) = parse_page(body, &HashMap::new(), Admission::default).unwrap();
    admission.finish().markets
}

fn self_metrics() -> [String; 2] {
    let values = [(
        SourceKind::Cryptowatch,
        SourceMetrics::new(SourceKind::Cryptowatch).values(),
    )];
    Format::ALL.map(|f| self_metrics::render(f, &values))
}

/// The self-metrics of all five sources, both formats: rendered once per
/// publish (prometheus-client's encoders over the values' snapshot).
#[divan::bench]
fn render_self_metrics(bencher: divan::Bencher) {
    let values: Vec<_> = SourceKind::ALL
        .iter()
        .map(|&k| (k, SourceMetrics::new(k).values()))
        .collect();
    bencher.bench(|| Format::ALL.map(|f| self_metrics::render(f, divan::black_box(&values))));
}

/// JSON body → typed DTOs → raw domain markets.
#[divan::bench]
fn parse_summaries(bencher: divan::Bencher) {
    let body = body();
    bencher
        .counter(divan::counter::BytesCount::new(body.len()))
        .bench(|| parse(divan::black_box(&body)).unwrap());
}

/// JSON body → validated, filtered, sorted markets: the new snapshot.
#[divan::bench]
fn parse_to_snapshot(bencher: divan::Bencher) {
    let body = body();
    bencher.bench(|| snapshot(divan::black_box(&body)));
}

/// Snapshot → exposition text of every gauge family plus its gzip blocks (once per poll).
#[divan::bench]
fn render_and_compress(bencher: divan::Bencher) {
    let markets = snapshot(&body());
    bencher.bench(|| MarketFragments::render(divan::black_box(&markets), 1));
}

/// Publishing: stitch both formats from the chunks, compress the self-metrics (once per poll).
#[divan::bench]
fn publish_exposition(bencher: divan::Bencher) {
    let f = MarketFragments::render(&snapshot(&body()), 1);
    bencher.bench(|| Exposition::compose(&[divan::black_box(&f)], self_metrics(), 1));
}

/// What a scrape costs in the handler: refcount bumps on the pre-rendered chunks.
#[divan::bench]
fn scrape_gzip_body(bencher: divan::Bencher) {
    let e = Exposition::compose(
        &[&MarketFragments::render(&snapshot(&body()), 1)],
        self_metrics(),
        1,
    );
    bencher.bench(|| e.gzip_body(Format::OpenMetrics, None));
}

/// The whole text body deflated at one level: what raising `Compression::fast()` in
/// `exposition.rs` would cost per poll, and the body it would give (printed once per
/// level; the chunked design compresses the same text, family by family).
#[divan::bench(args = [1, 3, 6, 9])]
fn deflate_text_body(bencher: divan::Bencher, level: u32) {
    use std::io::Write;
    let text = Exposition::compose(
        &[&MarketFragments::render(&snapshot(&body()), 1)],
        self_metrics(),
        1,
    )
    .to_bytes(Format::Text);
    let deflate = |text: &[u8]| {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(text).unwrap();
        e.finish().unwrap()
    };
    eprintln!(
        "level {level}: {} bytes of text -> {} bytes deflated",
        text.len(),
        deflate(&text).len()
    );
    bencher.bench(|| deflate(divan::black_box(&text)));
}
