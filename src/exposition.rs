//! The Prometheus exposition: rendered once per poll, served as-is per scrape.
//!
//! Per-market samples are rendered per source and per gauge into immutable
//! chunks ([`MarketFragments`]), compressed once when the source is polled.
//! Publishing stitches them, family by family, with the small self-metrics
//! block into an [`Exposition`]: plain and gzip bodies are lists of shared
//! chunks (see [`Chunk`]), so a scrape costs a few refcount bumps.

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress};
use http_body::{Frame, SizeHint};

use crate::domain::{Market, MarketGauge};

/// The two exposition formats a client can negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Text,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::Text, Format::OpenMetrics];

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Metric types as the self-metrics need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    Counter,
    Histogram,
    /// An info metric: `# TYPE x info` / `x_info` in OpenMetrics, a gauge named `x_info` in text.
    Info,
}

/// Writes `# HELP`/`# TYPE` for a family. `name` is the family name without
/// the `_total`/`_info` suffix; the two formats differ only here.
pub fn write_header(out: &mut String, format: Format, name: &str, kind: MetricType, help: &str) {
    let (family, type_name) = match (format, kind) {
        (_, MetricType::Gauge) => (name.to_owned(), "gauge"),
        (_, MetricType::Histogram) => (name.to_owned(), "histogram"),
        (Format::Text, MetricType::Counter) => (format!("{name}_total"), "counter"),
        (Format::OpenMetrics, MetricType::Counter) => (name.to_owned(), "counter"),
        (Format::Text, MetricType::Info) => (format!("{name}_info"), "gauge"),
        (Format::OpenMetrics, MetricType::Info) => (name.to_owned(), "info"),
    };
    let _ = writeln!(out, "# HELP {family} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {family} {type_name}");
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Appends a label value, escaped per the exposition formats.
pub fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes one sample line: `name{k="v",...} value`.
pub fn write_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            push_label_value(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    push_value(out, value);
    out.push('\n');
}

/// Shortest round-trip decimal (zmij, the formatter serde_json uses); the
/// special values as both formats spell them.
pub fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        // Counts and whole prices read better as "26250" than "26250.0".
        let _ = write!(out, "{}", v as i64);
    } else {
        out.push_str(zmij::Buffer::new().format_finite(v));
    }
}

/// A piece of the exposition, kept both as text and as raw-deflate blocks
/// that end on a sync flush (byte-aligned, not final). Because such block
/// runs can be concatenated, a gzip body is assembled from pre-compressed
/// chunks: each source's markets are compressed once per poll of that
/// source, and publishing only adds a header, the small self-metrics chunk
/// and a trailer, whose CRC is combined from the chunks' CRCs.
#[derive(Debug, Default)]
pub struct Chunk {
    pub text: Bytes,
    deflated: Bytes,
    crc: Crc,
}

impl Chunk {
    pub fn new(text: Bytes) -> Self {
        let mut crc = Crc::new();
        crc.update(&text);
        let deflated = deflate_sync(&text).unwrap_or_else(|| stored_blocks(&text));
        Self {
            text,
            deflated: Bytes::from(deflated),
            crc,
        }
    }
}

/// Level 1: on this text it is several times faster than the default level
/// for a body only slightly larger (docs/performance.md).
fn deflate_sync(text: &[u8]) -> Option<Vec<u8>> {
    let mut c = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(text.len() / 4 + 256);
    loop {
        let consumed = usize::try_from(c.total_in()).ok()?;
        c.compress_vec(text.get(consumed..)?, &mut out, FlushCompress::Sync)
            .ok()?;
        // zlib semantics: the flush is complete once output space is left over.
        if usize::try_from(c.total_in()).ok()? == text.len() && out.len() < out.capacity() {
            return Some(out);
        }
        out.reserve(out.capacity().max(4096));
    }
}

/// Uncompressed deflate blocks: a fallback that cannot fail.
fn stored_blocks(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 65_535 * 5 + 5);
    for piece in text.chunks(65_535) {
        let len = piece.len() as u16;
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// gzip member header: no name, mtime 0, OS unknown (RFC 1952).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
/// An empty final stored block: closes a run of sync-flushed blocks.
const DEFLATE_END: [u8; 5] = [0x01, 0x00, 0x00, 0xff, 0xff];

fn gzip_chunks(chunks: &[&Chunk]) -> Vec<Bytes> {
    let mut crc = Crc::new();
    let mut out = Vec::with_capacity(chunks.len() + 3);
    out.push(Bytes::from_static(&GZIP_HEADER));
    for c in chunks {
        crc.combine(&c.crc);
        out.push(c.deflated.clone());
    }
    let mut tail = DEFLATE_END.to_vec();
    tail.extend_from_slice(&crc.sum().to_le_bytes());
    tail.extend_from_slice(&crc.amount().to_le_bytes());
    out.push(Bytes::from(tail));
    out
}

/// One source's market samples: per gauge family, one chunk per slice
/// (`--web.shards`; one slice unless sharded).
#[derive(Debug, Default)]
pub struct MarketFragments {
    pub families: [Vec<Chunk>; MarketGauge::COUNT],
    pub markets: usize,
}

impl MarketFragments {
    /// Renders (and compresses) markets already sorted and validated, each
    /// into the slice of its pair ([`crate::shard::of`]). Fragments hold sample
    /// lines only; headers are separate chunks.
    pub fn render(markets: &[Market], shards: usize) -> Self {
        let shards = shards.max(1);
        let slice: Vec<usize> = markets
            .iter()
            .map(|m| crate::shard::of(&m.pair, shards))
            .collect();
        let families = MarketGauge::ALL.map(|gauge| {
            let mut outs: Vec<String> = (0..shards)
                .map(|_| String::with_capacity(markets.len() / shards * 72))
                .collect();
            for (m, &i) in markets.iter().zip(&slice) {
                let Some(out) = outs.get_mut(i) else { continue };
                if let Some(v) = m.get(gauge) {
                    match &m.assets {
                        Some(a) => write_sample(
                            out,
                            gauge.name(),
                            &[
                                ("exchange", &m.exchange),
                                ("pair", &m.pair),
                                ("base", &a.base),
                                ("quote", &a.quote),
                            ],
                            v,
                        ),
                        None => write_sample(
                            out,
                            gauge.name(),
                            &[("exchange", &m.exchange), ("pair", &m.pair)],
                            v,
                        ),
                    }
                }
            }
            outs.into_iter()
                .map(|out| Chunk::new(Bytes::from(out)))
                .collect()
        });
        Self {
            families,
            markets: markets.len(),
        }
    }
}

/// `# HELP`/`# TYPE` of each market gauge: identical in both formats.
static GAUGE_HEADERS: LazyLock<[Chunk; MarketGauge::COUNT]> = LazyLock::new(|| {
    MarketGauge::ALL.map(|gauge| {
        let mut header = String::new();
        write_header(
            &mut header,
            Format::Text,
            gauge.name(),
            MetricType::Gauge,
            gauge.help(),
        );
        Chunk::new(Bytes::from(header))
    })
});

static OPENMETRICS_EOF: LazyLock<Chunk> =
    LazyLock::new(|| Chunk::new(Bytes::from_static(b"# EOF\n")));

/// One body in both formats, plain and gzipped, as lists of shared chunks.
#[derive(Debug, Default)]
struct Bodies {
    /// Indexed by `Format as usize`.
    plain: [Vec<Bytes>; 2],
    gzip: [Vec<Bytes>; 2],
}

impl Bodies {
    /// Market chunks family by family (each family's header once, where it has
    /// samples), then the self-metrics when given.
    fn stitch(
        families: [Vec<&Chunk>; MarketGauge::COUNT],
        self_metrics: Option<&[Chunk; 2]>,
    ) -> Self {
        let mut markets: Vec<&Chunk> = Vec::new();
        for (gauge, chunks) in MarketGauge::ALL.into_iter().zip(families) {
            let chunks: Vec<&Chunk> = chunks.into_iter().filter(|c| !c.text.is_empty()).collect();
            if !chunks.is_empty() {
                markets.push(&GAUGE_HEADERS[gauge as usize]);
                markets.extend(chunks);
            }
        }
        let mut text = markets.clone();
        let mut om = markets;
        if let Some([text_self, om_self]) = self_metrics {
            text.push(text_self);
            om.push(om_self);
        }
        om.push(&OPENMETRICS_EOF);
        let plain = |chunks: &[&Chunk]| chunks.iter().map(|c| c.text.clone()).collect::<Vec<_>>();
        Self {
            plain: [plain(&text), plain(&om)],
            gzip: [gzip_chunks(&text), gzip_chunks(&om)],
        }
    }
}

/// A complete, immutable exposition in both formats, plain and gzipped,
/// each a list of shared chunks: serving one copies nothing. With slices
/// (`--web.shards`), each slice is such a body too, made of the same chunks.
#[derive(Debug, Default)]
pub struct Exposition {
    all: Bodies,
    /// Empty unless sharded. The self-metrics are in slice 0 only, so that they
    /// are scraped once however many shards scrape the exporter.
    slices: Vec<Bodies>,
}

impl Exposition {
    /// Stitches the market chunks of every source, family by family, and the
    /// self-metrics (one rendering per format); with `shards` > 1, each slice too.
    pub fn compose(sources: &[&MarketFragments], self_metrics: [String; 2], shards: usize) -> Self {
        let self_metrics = self_metrics.map(|s| Chunk::new(Bytes::from(s)));
        let family = |gauge: MarketGauge, slice: Option<usize>| -> Vec<&Chunk> {
            sources
                .iter()
                .flat_map(|s| {
                    let chunks = &s.families[gauge as usize];
                    match slice {
                        None => chunks.iter().collect::<Vec<_>>(),
                        Some(i) => chunks.get(i).into_iter().collect(),
                    }
                })
                .collect()
        };
        let all = Bodies::stitch(
            MarketGauge::ALL.map(|g| family(g, None)),
            Some(&self_metrics),
        );
        let slices = if shards > 1 {
            (0..shards)
                .map(|i| {
                    Bodies::stitch(
                        MarketGauge::ALL.map(|g| family(g, Some(i))),
                        (i == 0).then_some(&self_metrics),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        Self { all, slices }
    }

    fn bodies(&self, slice: Option<usize>) -> &Bodies {
        slice.and_then(|i| self.slices.get(i)).unwrap_or(&self.all)
    }

    /// The uncompressed body for `format`: every market, or one slice (an
    /// unsliced exposition serves every market as its only slice).
    pub fn body(&self, format: Format, slice: Option<usize>) -> ChunkedBody {
        ChunkedBody::new(self.bodies(slice).plain[format as usize].clone())
    }

    /// The gzip body for `format`.
    pub fn gzip_body(&self, format: Format, slice: Option<usize>) -> ChunkedBody {
        ChunkedBody::new(self.bodies(slice).gzip[format as usize].clone())
    }

    /// The uncompressed body in one buffer (tests, benchmarks, golden files).
    pub fn to_bytes(&self, format: Format) -> Vec<u8> {
        self.all.plain[format as usize].concat()
    }

    /// One slice's uncompressed body in one buffer (tests).
    pub fn slice_bytes(&self, format: Format, slice: usize) -> Vec<u8> {
        self.bodies(Some(slice)).plain[format as usize].concat()
    }

    /// The gzip body in one buffer.
    pub fn to_gzip_bytes(&self, format: Format) -> Vec<u8> {
        self.all.gzip[format as usize].concat()
    }
}

/// An HTTP body streaming shared chunks, with an exact length.
#[derive(Debug)]
pub struct ChunkedBody {
    chunks: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl ChunkedBody {
    pub fn new(chunks: Vec<Bytes>) -> Self {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Self {
            chunks: chunks.into(),
            remaining,
        }
    }
}

impl http_body::Body for ChunkedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.chunks.pop_front() {
            Some(chunk) => {
                self.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn market(exchange: &str, pair: &str, price: Option<f64>) -> Market {
        Market {
            exchange: exchange.into(),
            pair: pair.into(),
            assets: None,
            values: [price, None, None, None, Some(2.5), None, None],
        }
    }

    #[test]
    fn escapes_labels_and_formats_values() {
        let mut out = String::new();
        write_sample(
            &mut out,
            "m",
            &[("pair", "a\"b\\c\nd")],
            8.000000000000093e-8,
        );
        assert_eq!(out, "m{pair=\"a\\\"b\\\\c\\nd\"} 8.000000000000093e-8\n");
        let mut out = String::new();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 26250.0, -0.5] {
            push_value(&mut out, v);
            out.push(' ');
        }
        assert_eq!(out, "NaN +Inf -Inf 26250 -0.5 ");
    }

    #[test]
    fn composes_families_across_sources_and_formats() {
        let a = MarketFragments::render(&[market("a", "x", Some(1.0))], 1);
        let b = MarketFragments::render(&[market("b", "y", None)], 1);
        let e = Exposition::compose(&[&a, &b], ["self_text\n".into(), "self_om\n".into()], 1);
        let text = String::from_utf8(e.to_bytes(Format::Text)).unwrap();
        assert_eq!(
            text,
            "# HELP crypto_market_price Last trade price in quote currency, cached from the last successful poll.\n\
             # TYPE crypto_market_price gauge\n\
             crypto_market_price{exchange=\"a\",pair=\"x\"} 1\n\
             # HELP crypto_market_volume_24h Traded volume of the rolling 24h window in base currency, cached from the last successful poll.\n\
             # TYPE crypto_market_volume_24h gauge\n\
             crypto_market_volume_24h{exchange=\"a\",pair=\"x\"} 2.5\n\
             crypto_market_volume_24h{exchange=\"b\",pair=\"y\"} 2.5\n\
             self_text\n"
        );
        let om = String::from_utf8(e.to_bytes(Format::OpenMetrics)).unwrap();
        assert!(om.ends_with("self_om\n# EOF\n"));
        for format in Format::ALL {
            let mut unzipped = Vec::new();
            flate2::read::GzDecoder::new(&e.to_gzip_bytes(format)[..])
                .read_to_end(&mut unzipped)
                .unwrap();
            assert_eq!(unzipped, e.to_bytes(format));
        }
    }

    #[test]
    fn chunks_concatenate_into_one_gzip_stream() {
        let big: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let parts = [
            Chunk::new(Bytes::from(big.clone())),
            Chunk::new(Bytes::new()),
            Chunk::new(Bytes::from_static(b"tail\n")),
        ];
        let gz: Vec<u8> = gzip_chunks(&parts.iter().collect::<Vec<_>>()).concat();
        assert!(
            gz.len() < big.len() / 3,
            "compressed: {} of {}",
            gz.len(),
            big.len()
        );
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, format!("{big}tail\n"));
        // The stored-block fallback is a valid stream too.
        let stored = Chunk {
            deflated: Bytes::from(stored_blocks(big.as_bytes())),
            ..Chunk::new(Bytes::from(big.clone()))
        };
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gzip_chunks(&[&stored]).concat()[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, big);
    }

    #[test]
    fn headers_differ_only_for_counters_and_info() {
        let mut t = String::new();
        write_header(
            &mut t,
            Format::Text,
            "x_polls",
            MetricType::Counter,
            "Polls.",
        );
        assert_eq!(
            t,
            "# HELP x_polls_total Polls.\n# TYPE x_polls_total counter\n"
        );
        let mut o = String::new();
        write_header(
            &mut o,
            Format::OpenMetrics,
            "x_polls",
            MetricType::Counter,
            "Polls.",
        );
        assert_eq!(o, "# HELP x_polls Polls.\n# TYPE x_polls counter\n");
        let mut o = String::new();
        write_header(
            &mut o,
            Format::OpenMetrics,
            "x_build",
            MetricType::Info,
            "Build.",
        );
        assert_eq!(o, "# HELP x_build Build.\n# TYPE x_build info\n");
    }

    /// Sample lines of a body, and its family headers in order.
    fn samples_and_families(body: &[u8]) -> (Vec<String>, Vec<String>) {
        let text = String::from_utf8(body.to_vec()).unwrap();
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(str::to_owned)
            .collect();
        let families = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_owned())
            .collect();
        (samples, families)
    }

    #[test]
    fn slices_partition_every_market_by_pair_and_are_valid_bodies() {
        // Two sources; many pairs, each quoted by several exchanges.
        let markets = |exchange: &str| -> Vec<Market> {
            (0..200)
                .map(|i| market(exchange, &format!("p{i:03}usd"), Some(f64::from(i))))
                .collect()
        };
        let (a, b) = (markets("a"), markets("b"));
        for n in 1..=8 {
            let fa = MarketFragments::render(&a, n);
            let fb = MarketFragments::render(&b, n);
            let e = Exposition::compose(&[&fa, &fb], ["self_text\n".into(), "self_om\n".into()], n);
            for format in Format::ALL {
                let (mut all, _) = samples_and_families(&e.to_bytes(format));
                let mut union = Vec::new();
                let mut pair_slice = std::collections::HashMap::new();
                for i in 0..n {
                    let body = e.slice_bytes(format, i);
                    let (samples, families) = samples_and_families(&body);
                    // Valid: each family's header once, self-metrics in slice 0 only,
                    // OpenMetrics closed by # EOF.
                    let unique: std::collections::HashSet<_> = families.iter().collect();
                    assert_eq!(
                        unique.len(),
                        families.len(),
                        "{n}/{i}: a family header twice"
                    );
                    let text = String::from_utf8(body).unwrap();
                    assert_eq!(text.contains("self_"), i == 0, "{n}/{i}");
                    if format == Format::OpenMetrics {
                        assert!(text.ends_with("# EOF\n"), "{n}/{i}");
                    }
                    for line in &samples {
                        if let Some(pair) = line.split("pair=\"").nth(1) {
                            let pair = pair.split('"').next().unwrap().to_owned();
                            // Every exchange's quote of a pair in one slice.
                            assert_eq!(*pair_slice.entry(pair).or_insert(i), i, "{n}: {line}");
                        }
                    }
                    union.extend(samples);
                }
                // Exactly once: the slices together are the whole body, line for line.
                union.sort();
                all.sort();
                assert_eq!(union, all, "{n} slices, {format:?}");
                assert_eq!(
                    all.len(),
                    2 * 200 * 2 + 1,
                    "price and volume of 400 markets, self"
                );
            }
            if n > 1 {
                // A gzip slice is the same slice, compressed.
                let mut unzipped = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(
                        &e.bodies(Some(n - 1)).gzip[Format::Text as usize].concat()[..],
                    ),
                    &mut unzipped,
                )
                .unwrap();
                assert_eq!(unzipped, e.slice_bytes(Format::Text, n - 1));
            }
        }
    }
}
