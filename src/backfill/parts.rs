//! The backfill's work in progress: one file per metric family, filled market
//! by market, and an index of the markets done. OpenMetrics wants each
//! family's samples together, markets come one at a time, and a history of
//! a thousand markets is gigabytes of text: so each market's samples go to the
//! end of its families' files, as binary records (labels once, then 16 bytes
//! a sample: an eighth of their text), and the output is their text, family
//! after family, written once at the end.
//!
//! The same files make a backfill resumable. A market is done once its index
//! line is written, after its lines; a rerun cuts each file back to the
//! length the last index line records (dropping a market interrupted half
//! way) and skips the markets listed.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::domain::MarketGauge;

const INDEX: &str = "done.jsonl";
const PARAMS: &str = "params.json";

/// Families' files and the index, in `dir`.
#[derive(Debug)]
pub struct Parts {
    dir: PathBuf,
    files: Vec<File>,
    lengths: [u64; MarketGauge::COUNT],
    index: File,
    done: HashSet<(String, String)>,
}

/// What a backfill is of: a rerun resumes only the same backfill.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    pub sources: Vec<String>,
    pub from: i64,
    pub until: i64,
    pub step_ms: u64,
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PartsError {
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error(
        "{path}: holds an unfinished backfill of other options ({differs}); rerun it with the same options to resume, or remove the directory to start afresh"
    )]
    Other { path: String, differs: String },
    #[error(
        "{path}: line {line}: not a backfill index line ({error}); remove the directory to start afresh"
    )]
    Index {
        path: String,
        line: usize,
        error: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PartsError + '_ {
    move |error| PartsError::Io {
        path: path.display().to_string(),
        error,
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Done {
    exchange: String,
    pair: String,
    lengths: [u64; MarketGauge::COUNT],
}

impl Parts {
    /// Opens `dir`, resuming what it holds. `params` describe this backfill;
    /// when `dir` holds one already, its `until` is taken when `until_given`
    /// is false (a rerun without `--until` means "the same backfill"), and
    /// everything else must be equal. Returns the params in force.
    pub fn open(
        dir: &Path,
        mut params: Params,
        until_given: bool,
    ) -> Result<(Self, Params), PartsError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let params_path = dir.join(PARAMS);
        match std::fs::read(&params_path) {
            Ok(bytes) => {
                let stored: Params =
                    serde_json::from_slice(&bytes).map_err(|e| PartsError::Index {
                        path: params_path.display().to_string(),
                        line: 1,
                        error: e.to_string(),
                    })?;
                if !until_given {
                    // `from` is `until - since`: the same since, the stored until.
                    let since = params.until - params.from;
                    params.until = stored.until;
                    params.from = stored.until - since;
                }
                if stored != params {
                    return Err(PartsError::Other {
                        path: dir.display().to_string(),
                        differs: describe(&stored, &params),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = serde_json::to_vec(&params).map_err(|e| PartsError::Io {
                    path: params_path.display().to_string(),
                    error: std::io::Error::other(e),
                })?;
                std::fs::write(&params_path, text).map_err(io(&params_path))?;
            }
            Err(e) => return Err(io(&params_path)(e)),
        }
        let index_path = dir.join(INDEX);
        let mut done = HashSet::new();
        let mut lengths = [0u64; MarketGauge::COUNT];
        let mut kept = 0u64;
        if let Ok(f) = File::open(&index_path) {
            for (n, line) in BufReader::new(f).lines().enumerate() {
                let line = line.map_err(io(&index_path))?;
                // A line cut short by a crash is the last one: what it
                // describes is redone.
                let Ok(d) = serde_json::from_str::<Done>(&line) else {
                    if line.ends_with('}') {
                        return Err(PartsError::Index {
                            path: index_path.display().to_string(),
                            line: n + 1,
                            error: "unreadable".into(),
                        });
                    }
                    break;
                };
                kept += line.len() as u64 + 1;
                lengths = d.lengths;
                done.insert((d.exchange, d.pair));
            }
        }
        let index = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&index_path)
            .map_err(io(&index_path))?;
        index.set_len(kept).map_err(io(&index_path))?;
        let mut files = Vec::with_capacity(MarketGauge::COUNT);
        for gauge in MarketGauge::ALL {
            let path = dir.join(gauge.name());
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            f.set_len(lengths[gauge as usize]).map_err(io(&path))?;
            files.push(f);
        }
        Ok((
            Self {
                dir: dir.to_owned(),
                files,
                lengths,
                index,
                done,
            },
            params,
        ))
    }

    pub fn is_done(&self, exchange: &str, pair: &str) -> bool {
        self.done.contains(&(exchange.to_owned(), pair.to_owned()))
    }

    pub fn done(&self) -> usize {
        self.done.len()
    }

    /// Adds one market's samples.
    pub fn add(&mut self, exchange: &str, pair: &str, samples: &Samples) -> Result<(), PartsError> {
        let mut record = Vec::new();
        for (g, (file, points)) in self.files.iter_mut().zip(&samples.by_gauge).enumerate() {
            if points.is_empty() {
                continue;
            }
            record.clear();
            encode(&mut record, &samples.labels, points);
            let path = self.dir.join(MarketGauge::ALL[g].name());
            file.write_all(&record).map_err(io(&path))?;
            self.lengths[g] += record.len() as u64;
        }
        let line = serde_json::to_string(&Done {
            exchange: exchange.to_owned(),
            pair: pair.to_owned(),
            lengths: self.lengths,
        })
        .map_err(|e| PartsError::Io {
            path: self.dir.join(INDEX).display().to_string(),
            error: std::io::Error::other(e),
        })?;
        let index_path = self.dir.join(INDEX);
        self.index
            .write_all(format!("{line}\n").as_bytes())
            .map_err(io(&index_path))?;
        self.done.insert((exchange.to_owned(), pair.to_owned()));
        Ok(())
    }

    /// Writes the OpenMetrics text: each family's header and sample lines,
    /// then `# EOF`. The directory stays until [`Parts::remove`].
    pub fn write_text<W: Write>(&mut self, out: &mut W) -> Result<(), PartsError> {
        let mut text = String::with_capacity(FLUSH_AT + 4096);
        for gauge in MarketGauge::ALL {
            let path = self.dir.join(gauge.name());
            writeln!(out, "# HELP {} {}", gauge.name(), gauge.help())
                .and_then(|()| writeln!(out, "# TYPE {} gauge", gauge.name()))
                .map_err(io(&self.dir))?;
            let f = File::open(&path).map_err(io(&path))?;
            let mut records = BufReader::with_capacity(1 << 20, f);
            let mut labels = String::new();
            while read_labels(&mut records, &mut labels).map_err(io(&path))? {
                let n = read_u32(&mut records).map_err(io(&path))?;
                for _ in 0..n {
                    let mut point = [0u8; 16];
                    records.read_exact(&mut point).map_err(io(&path))?;
                    let (ms, v) = point.split_at(8);
                    let ms = u64::from_le_bytes(ms.try_into().unwrap_or_default());
                    let v = f64::from_le_bytes(v.try_into().unwrap_or_default());
                    super::push_sample(&mut text, gauge, &labels, v, ms);
                }
                if text.len() >= FLUSH_AT {
                    out.write_all(text.as_bytes()).map_err(io(&self.dir))?;
                    text.clear();
                }
            }
            out.write_all(text.as_bytes()).map_err(io(&self.dir))?;
            text.clear();
        }
        out.write_all(b"# EOF\n").map_err(io(&self.dir))
    }

    pub fn remove(self) -> Result<(), PartsError> {
        drop(self.files);
        drop(self.index);
        std::fs::remove_dir_all(&self.dir).map_err(io(&self.dir))
    }
}

/// Text is written out in pieces of about this size.
const FLUSH_AT: usize = 1 << 20;

/// One market's samples, gauge by gauge, before they are text.
#[derive(Debug, Default)]
pub struct Samples {
    /// The series' labels, rendered (`exchange="kraken",pair="btcusd",...`).
    pub labels: String,
    /// `(milliseconds since the epoch, value)`, in time order, per gauge.
    pub by_gauge: [Vec<(u64, f64)>; MarketGauge::COUNT],
}

impl Samples {
    pub fn clear(&mut self, labels: String) {
        self.labels = labels;
        self.by_gauge.iter_mut().for_each(Vec::clear);
    }

    /// Series with at least one sample.
    pub fn series(&self) -> usize {
        self.by_gauge.iter().filter(|p| !p.is_empty()).count()
    }
}

/// A record: labels' length and bytes, the count, then each sample's
/// milliseconds and value, little-endian.
fn encode(out: &mut Vec<u8>, labels: &str, points: &[(u64, f64)]) {
    out.extend_from_slice(
        &u32::try_from(labels.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(labels.as_bytes());
    out.extend_from_slice(
        &u32::try_from(points.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for (ms, v) in points {
        out.extend_from_slice(&ms.to_le_bytes());
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// The next record's labels into `labels`; false at the end of the file.
fn read_labels(r: &mut impl BufRead, labels: &mut String) -> std::io::Result<bool> {
    if r.fill_buf()?.is_empty() {
        return Ok(false);
    }
    let len = read_u32(r)? as usize;
    let mut bytes = vec![0u8; len];
    r.read_exact(&mut bytes)?;
    *labels = String::from_utf8(bytes).map_err(std::io::Error::other)?;
    Ok(true)
}

fn describe(stored: &Params, now: &Params) -> String {
    let mut out = Vec::new();
    if stored.sources != now.sources {
        out.push(format!(
            "sources {:?}, now {:?}",
            stored.sources, now.sources
        ));
    }
    if stored.from != now.from || stored.until != now.until {
        out.push(format!(
            "history {}..{}, now {}..{}",
            stored.from, stored.until, now.from, now.until
        ));
    }
    if stored.step_ms != now.step_ms {
        out.push(format!(
            "step {} ms, now {} ms",
            stored.step_ms, now.step_ms
        ));
    }
    if stored.labels != now.labels {
        out.push(format!("labels {:?}, now {:?}", stored.labels, now.labels));
    }
    out.join("; ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params(until: i64) -> Params {
        Params {
            sources: vec!["kraken".into()],
            from: until - 3600,
            until,
            step_ms: 0,
            labels: vec![],
        }
    }

    fn samples(pair: &str) -> Samples {
        let mut s = Samples::default();
        s.clear(format!("pair=\"{pair}\""));
        for (g, points) in s.by_gauge.iter_mut().enumerate() {
            points.push((60_000, g as f64));
        }
        s
    }

    #[test]
    fn a_rerun_drops_a_half_written_market_and_skips_the_done_ones() {
        let dir = std::env::temp_dir().join(format!("cme-parts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut parts, _) = Parts::open(&dir, params(7200), true).unwrap();
        parts.add("kraken", "btcusd", &samples("btcusd")).unwrap();
        drop(parts);
        // A crash half way through the next market: lines written, its index
        // line cut short.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(MarketGauge::Price.name()))
            .unwrap();
        f.write_all(b"half written\n").unwrap();
        let mut index = OpenOptions::new()
            .append(true)
            .open(dir.join(INDEX))
            .unwrap();
        index.write_all(br#"{"exchange":"kraken","pa"#).unwrap();

        // A rerun without --until: the first run's window.
        let (mut parts, p) = Parts::open(&dir, params(9999), false).unwrap();
        assert_eq!(p, params(7200));
        assert!(parts.is_done("kraken", "btcusd"));
        assert!(!parts.is_done("kraken", "ethusd"));
        parts.add("kraken", "ethusd", &samples("ethusd")).unwrap();
        let mut out = Vec::new();
        parts.write_text(&mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("half written"), "{out}");
        let prices = "crypto_market_price{pair=\"btcusd\"} 0 60\n\
                      crypto_market_price{pair=\"ethusd\"} 0 60\n\
                      # HELP crypto_market_price_high_24h";
        assert!(out.contains(prices), "{out}");
        let last = "crypto_market_volume_usd_24h{pair=\"ethusd\"} 6 60\n# EOF\n";
        assert!(out.ends_with(last), "{out}");
        drop(parts);

        // Other options: refused, naming the difference.
        let mut other = params(7200);
        other.step_ms = 5000;
        let err = Parts::open(&dir, other, true).unwrap_err().to_string();
        assert!(err.ends_with("holds an unfinished backfill of other options (step 0 ms, now 5000 ms); rerun it with the same options to resume, or remove the directory to start afresh"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
