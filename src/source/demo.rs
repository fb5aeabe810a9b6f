//! The `demo` source: seeded synthetic markets, no network at all.
//!
//! A few hundred markets (fictional exchanges, real-looking pairs) follow
//! geometric random walks; now and then one market's price or volume jumps
//! above 3x for a few polls, so the spike alerts and dashboards have something
//! to show. The same seed always gives the same sequence.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Build, Entry, Fetched, PollFuture, Source, SourceError};
use crate::admission::Admission;
use crate::domain::{Assets, MarketGauge, RawMarket};
use crate::settings::value::{self, AtMost};
use crate::settings::{ConfigError, Resolve, SourceOptions};

const EXCHANGES: [&str; 5] = ["alphaex", "betatrade", "gammabit", "deltacoin", "epsilonx"];
/// (base, USD price, typical 24h base volume)
const BASES: [(&str, f64, f64); 20] = [
    ("btc", 60_000.0, 2_000.0),
    ("eth", 3_000.0, 30_000.0),
    ("sol", 150.0, 400_000.0),
    ("xrp", 0.55, 80_000_000.0),
    ("ada", 0.45, 60_000_000.0),
    ("doge", 0.12, 500_000_000.0),
    ("dot", 7.0, 2_000_000.0),
    ("ltc", 80.0, 300_000.0),
    ("link", 15.0, 1_500_000.0),
    ("avax", 35.0, 800_000.0),
    ("atom", 9.0, 1_200_000.0),
    ("uni", 8.0, 1_000_000.0),
    ("xlm", 0.11, 90_000_000.0),
    ("trx", 0.12, 200_000_000.0),
    ("etc", 25.0, 400_000.0),
    ("fil", 5.5, 2_000_000.0),
    ("near", 5.0, 3_000_000.0),
    ("algo", 0.18, 40_000_000.0),
    ("aave", 95.0, 60_000.0),
    ("xtz", 0.9, 5_000_000.0),
];
/// (quote, USD value of one unit)
const QUOTES: [(&str, f64); 4] = [
    ("usd", 1.0),
    ("usdt", 1.0),
    ("eur", 1.08),
    ("btc", 60_000.0),
];

/// Chance per market and minute that a spike starts, and how long one lasts.
/// In time, not polls: a demo polled every 5 s (docker-compose.demo.yml)
/// spikes as often, and each spike lasts as long, as one polled every minute,
/// so a spike outlives the alert's `for: 1m` at any poll interval.
const SPIKES_PER_MARKET_MINUTE: f64 = 0.002;
const SPIKE_DURATION: Duration = Duration::from_secs(240);
/// Polls kept for the rolling 24h high/low (one day at a 60s interval).
const WINDOW: u64 = 1_440;
/// The price walk remembers the noise of the last 6 hours, the volume's of
/// the last hour: a moving sum, so the value at a step depends on that step
/// alone, never on when the simulation started.
const PRICE_MEMORY: Duration = Duration::from_secs(6 * 3600);
const VOLUME_MEMORY: Duration = Duration::from_secs(3600);
/// Log-volatility per minute of price and volume.
const PRICE_SIGMA_PER_MINUTE: f64 = 0.002;
const VOLUME_SIGMA_PER_MINUTE: f64 = 0.02;
/// Noise is summed as integers (exactly, in any order) at this scale.
const NOISE_SCALE: f64 = (1u64 << 24) as f64;

/// The demo's settings: `--demo.*` flags, the `demo:` section of the file.
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[group(skip)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Seed of the demo source's random walks. [default: 1]
    #[arg(
        long = "demo.seed",
        env = "CRYPTO_MARKET_EXPORTER_DEMO_SEED",
        value_name = "N",
        value_parser = value::parse::<u64>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub seed: Option<u64>,
    /// Number of synthetic markets of the demo source. [default: 300]
    #[arg(
        long = "demo.markets",
        env = "CRYPTO_MARKET_EXPORTER_DEMO_MARKETS",
        value_name = "N",
        value_parser = value::parse::<AtMost<100_000>>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub markets: Option<AtMost<100_000>>,
}

pub const DEFAULT_SEED: u64 = 1;
/// A few hundred markets: enough for ranks and percentiles to mean something.
pub const DEFAULT_MARKETS: usize = 300;

impl SourceOptions for Options {
    type Config = DemoConfig;

    fn resolve(&self, cx: &mut Resolve<'_>) -> Result<DemoConfig, ConfigError> {
        Ok(DemoConfig {
            seed: self.seed.unwrap_or(DEFAULT_SEED),
            markets: self.markets.map_or(DEFAULT_MARKETS, |m| m.0),
            interval: cx.poll_interval,
        })
    }

    /// The interval is `poll.interval`'s, reported under `poll`.
    fn needs_restart(old: &DemoConfig, new: &DemoConfig) -> bool {
        (old.seed, old.markets) != (new.seed, new.markets)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    pub seed: u64,
    pub markets: usize,
    /// The poll interval, which the simulation's spikes are timed against.
    pub interval: Duration,
}

/// A market's traits, drawn once from the seed.
#[derive(Debug)]
struct Traits {
    exchange: &'static str,
    pair: String,
    assets: Assets,
    quote_usd: f64,
    price: f64,
    typical_volume: f64,
}

/// The demo's markets. Every value is a function of the seed, the market and
/// the step (wall time ÷ poll interval) alone: polled live or replayed for a
/// backfill (`crypto-market-exporter backfill --source=demo`), the same step
/// gives the same numbers, so history and live data join without a seam.
#[derive(Debug)]
pub struct Demo {
    seed: u64,
    interval_ms: u64,
    traits: Vec<Traits>,
    /// One walker per market, at the last step served.
    walkers: Vec<Walker>,
    last: Option<(u64, Vec<RawMarket>)>,
    /// Per-step chance that a market starts a spike, and its length in steps.
    spike_chance: f64,
    spike_polls: u64,
    price_memory: u64,
    volume_memory: u64,
    price_sigma: f64,
    volume_sigma: f64,
}

/// A 64-bit mix (splitmix64's finaliser): the demo's only source of chance.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What chance says for one market, step and purpose.
fn draw(seed: u64, market: usize, step: u64, purpose: u64) -> u64 {
    mix(
        mix(mix(seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_add(market as u64))
            .wrapping_add(step)
            .wrapping_mul(31)
            .wrapping_add(purpose),
    )
}

fn uniform(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal sample (Box–Muller) from one draw, as a scaled integer.
fn noise(bits: u64) -> i64 {
    let u1 = uniform(bits).max(f64::MIN_POSITIVE);
    let u2 = uniform(mix(bits));
    let g = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (g * NOISE_SCALE).round() as i64
}

const PRICE: u64 = 1;
const VOLUME: u64 = 2;
const SPIKE: u64 = 3;
const SPIKE_SIZE: u64 = 4;

/// One market's state at a step: the moving noise sums, the spike in effect,
/// and the prices of the window (with running max and min).
#[derive(Debug, Default)]
struct Walker {
    step: u64,
    price_noise: i64,
    volume_noise: i64,
    /// (last step of the spike, price factor, volume factor)
    spike: Option<(u64, f64, f64)>,
    window: VecDeque<(u64, f64)>,
    max: VecDeque<(u64, f64)>,
    min: VecDeque<(u64, f64)>,
}

/// The values a market shows at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Values {
    pub price: f64,
    pub high: f64,
    pub low: f64,
    pub open: f64,
    pub volume: f64,
}

impl Demo {
    pub fn new(config: &DemoConfig) -> Self {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let mut traits = Vec::with_capacity(config.markets);
        'fill: for (quote, quote_usd) in QUOTES {
            for (base, base_usd, volume) in BASES {
                if base == quote {
                    continue;
                }
                for exchange in EXCHANGES {
                    if traits.len() == config.markets {
                        break 'fill;
                    }
                    // Exchanges disagree slightly, as real ones do.
                    let price = base_usd / quote_usd * (1.0 + (rng.f64() - 0.5) * 0.004);
                    traits.push(Traits {
                        exchange,
                        pair: format!("{base}{quote}"),
                        assets: Assets::new(base, quote),
                        quote_usd,
                        price,
                        typical_volume: volume * (0.2 + rng.f64()),
                    });
                }
            }
        }
        // More markets than the catalogue holds: numbered extra pairs.
        let mut n = 0;
        while traits.len() < config.markets {
            let token = format!("tok{}", n / EXCHANGES.len());
            traits.push(Traits {
                exchange: EXCHANGES[n % EXCHANGES.len()],
                pair: format!("{token}usd"),
                assets: Assets::new(&token, "usd"),
                quote_usd: 1.0,
                price: 1.0 + rng.f64() * 10.0,
                typical_volume: 100_000.0,
            });
            n += 1;
        }
        let interval_ms = u64::try_from(config.interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let interval = interval_ms as f64 / 1000.0;
        let steps = |d: Duration| (d.as_millis() as u64 / interval_ms).max(1);
        let minutes = interval / 60.0;
        Self {
            seed: config.seed,
            interval_ms,
            traits,
            walkers: Vec::new(),
            last: None,
            spike_chance: 1.0 - (1.0 - SPIKES_PER_MARKET_MINUTE).powf(minutes),
            spike_polls: (SPIKE_DURATION.as_secs_f64() / interval).ceil().max(1.0) as u64,
            price_memory: steps(PRICE_MEMORY),
            volume_memory: steps(VOLUME_MEMORY),
            price_sigma: PRICE_SIGMA_PER_MINUTE * minutes.sqrt() / NOISE_SCALE,
            volume_sigma: VOLUME_SIGMA_PER_MINUTE * minutes.sqrt() / NOISE_SCALE,
        }
    }

    /// The step a wall time falls in.
    pub fn step_of(&self, unix_ms: u64) -> u64 {
        unix_ms / self.interval_ms
    }

    /// The step a point in time falls in.
    pub fn step_at(&self, t: std::time::SystemTime) -> u64 {
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.step_of(ms)
    }

    /// When a step starts, in Unix milliseconds.
    pub fn time_of(&self, step: u64) -> u64 {
        step.saturating_mul(self.interval_ms)
    }

    pub fn markets(&self) -> usize {
        self.traits.len()
    }

    /// The walker of `market` at `step`, built from that step's past alone.
    fn walker_at(&self, market: usize, step: u64) -> Walker {
        // The window's first step, and enough before it for the noise sums.
        let first = step.saturating_sub(WINDOW - 1);
        let mut w = Walker {
            step: first.wrapping_sub(1),
            ..Walker::default()
        };
        let sum = |purpose, memory: u64| -> i64 {
            (first.saturating_sub(memory)..first)
                .map(|s| noise(draw(self.seed, market, s, purpose)))
                .sum()
        };
        w.price_noise = sum(PRICE, self.price_memory);
        w.volume_noise = sum(VOLUME, self.volume_memory);
        // A spike that started before the window may still be on.
        for s in first.saturating_sub(self.spike_polls - 1)..first {
            self.maybe_spike(&mut w, market, s);
        }
        while w.step.wrapping_add(1) < step {
            self.advance(&mut w, market);
        }
        w
    }

    fn maybe_spike(&self, w: &mut Walker, market: usize, step: u64) {
        if uniform(draw(self.seed, market, step, SPIKE)) < self.spike_chance {
            let size = draw(self.seed, market, step, SPIKE_SIZE);
            // Half the spikes hit the price, all of them the volume.
            let price = if size & 1 == 0 {
                3.5 + uniform(mix(size))
            } else {
                1.0
            };
            let volume = 8.0 + uniform(mix(mix(size))) * 4.0;
            w.spike = Some((step + self.spike_polls - 1, price, volume));
        }
    }

    /// Moves a walker one step on and returns that step's values.
    fn advance(&self, w: &mut Walker, market: usize) -> Values {
        let step = w.step.wrapping_add(1);
        w.step = step;
        let t = &self.traits[market];
        let fresh = |purpose| noise(draw(self.seed, market, step, purpose));
        let stale = |purpose, memory| {
            step.checked_sub(memory)
                .map_or(0, |s| noise(draw(self.seed, market, s, purpose)))
        };
        w.price_noise += fresh(PRICE) - stale(PRICE, self.price_memory);
        w.volume_noise += fresh(VOLUME) - stale(VOLUME, self.volume_memory);
        self.maybe_spike(w, market, step);
        let (pf, vf) = match w.spike {
            Some((last, p, v)) if step <= last => (p, v),
            _ => (1.0, 1.0),
        };
        let price = t.price * (self.price_sigma * w.price_noise as f64).exp() * pf;
        let volume = t.typical_volume * (self.volume_sigma * w.volume_noise as f64).exp() * vf;
        // The window and its running max and min (monotonic queues).
        w.window.push_back((step, price));
        let oldest = step.saturating_sub(WINDOW - 1);
        while w.window.front().is_some_and(|(s, _)| *s < oldest) {
            w.window.pop_front();
        }
        while w.max.back().is_some_and(|(_, p)| *p <= price) {
            w.max.pop_back();
        }
        w.max.push_back((step, price));
        while w.max.front().is_some_and(|(s, _)| *s < oldest) {
            w.max.pop_front();
        }
        while w.min.back().is_some_and(|(_, p)| *p >= price) {
            w.min.pop_back();
        }
        w.min.push_back((step, price));
        while w.min.front().is_some_and(|(s, _)| *s < oldest) {
            w.min.pop_front();
        }
        Values {
            price,
            high: w.max.front().map_or(price, |(_, p)| *p),
            low: w.min.front().map_or(price, |(_, p)| *p),
            open: w.window.front().map_or(price, |(_, p)| *p),
            volume,
        }
    }

    /// The values of `market` at every step of `steps`, in order.
    pub fn series(&self, market: usize, steps: std::ops::RangeInclusive<u64>) -> Vec<Values> {
        let mut w = self.walker_at(market, *steps.start());
        steps.map(|_| self.advance(&mut w, market)).collect()
    }

    /// Labels and gauges of a market, for a step's values.
    fn market(&self, market: usize, v: Values) -> RawMarket {
        let t = &self.traits[market];
        RawMarket {
            exchange: t.exchange.to_owned(),
            pair: t.pair.clone(),
            assets: Some(t.assets.clone()),
            values: Self::gauges(v, t.quote_usd),
        }
    }

    /// The seven gauges of one step, as the live exporter shows them.
    pub fn gauges(v: Values, quote_usd: f64) -> [Option<f64>; MarketGauge::COUNT] {
        let mut values = [None; MarketGauge::COUNT];
        values[MarketGauge::Price as usize] = Some(v.price);
        values[MarketGauge::PriceHigh24h as usize] = Some(v.high);
        values[MarketGauge::PriceLow24h as usize] = Some(v.low);
        values[MarketGauge::PriceChangeRatio24h as usize] = Some(v.price / v.open - 1.0);
        values[MarketGauge::Volume24h as usize] = Some(v.volume);
        values[MarketGauge::VolumeQuote24h as usize] = Some(v.volume * v.price);
        values[MarketGauge::VolumeUsd24h as usize] = Some(v.volume * v.price * quote_usd);
        values
    }

    /// Every market at `step`: what a poll in that step serves.
    pub fn at(&mut self, step: u64) -> Vec<RawMarket> {
        if let Some((last, markets)) = &self.last
            && *last == step
        {
            return markets.clone();
        }
        // Walkers move on step by step while that is cheaper than a rebuild.
        let contiguous = self.walkers.len() == self.traits.len()
            && self
                .walkers
                .first()
                .is_some_and(|w| w.step < step && step - w.step <= WINDOW);
        if !contiguous {
            self.walkers = (0..self.traits.len())
                .map(|m| self.walker_at(m, step))
                .collect();
        }
        let mut walkers = std::mem::take(&mut self.walkers);
        let mut out = Vec::with_capacity(walkers.len());
        for (m, w) in walkers.iter_mut().enumerate() {
            let mut v = self.advance(w, m);
            while w.step < step {
                v = self.advance(w, m);
            }
            out.push(self.market(m, v));
        }
        self.walkers = walkers;
        self.last = Some((step, out.clone()));
        out
    }

    /// A market's labels: exchange, pair, and its assets.
    pub fn labels(&self, market: usize) -> (&str, &str, &Assets, f64) {
        let t = &self.traits[market];
        (t.exchange, &t.pair, &t.assets, t.quote_usd)
    }
}

impl Entry for Demo {
    type Options = Options;
    const EXCHANGE: Option<&'static str> = None;

    /// Paced by its own settings' interval (`poll.interval`); it makes no
    /// requests, so it has no request metrics.
    fn build(config: &DemoConfig, _cx: Build) -> Result<Self, SourceError> {
        Ok(Self::new(config))
    }
}

impl Source for Demo {
    fn poll(&mut self, mut admission: Admission) -> PollFuture<'_> {
        admission.extend(self.at(self.step_at(std::time::SystemTime::now())));
        Box::pin(async move { Ok(Fetched::new(admission)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step of 2026 at a 60 s interval.
    const K: u64 = 1_790_000_000 / 60;

    fn demo(seed: u64, markets: usize) -> Demo {
        Demo::new(&DemoConfig {
            seed,
            markets,
            interval: Duration::from_secs(60),
        })
    }

    #[test]
    fn deterministic_and_sized() {
        let (mut a, mut b) = (demo(7, 300), demo(7, 300));
        let (x, y) = (a.at(K), b.at(K));
        assert_eq!(x, y);
        assert_eq!(x.len(), 300);
        assert_ne!(demo(8, 300).at(K), x);
        assert_eq!(demo(1, 1000).at(K).len(), 1000);
    }

    /// A step's values depend on the step alone: walked to from long before,
    /// polled after a gap, or replayed for a backfill, they are the same
    /// numbers, bit for bit.
    #[test]
    fn a_step_is_the_same_however_it_is_reached() {
        let mut walked = demo(5, 50);
        for k in K - 3_000..=K {
            walked.at(k);
        }
        let mut fresh = demo(5, 50);
        assert_eq!(walked.at(K), fresh.at(K));
        // A gap shorter than the window, and one longer.
        assert_eq!(walked.at(K + 700), demo(5, 50).at(K + 700));
        assert_eq!(walked.at(K + 5_000), demo(5, 50).at(K + 5_000));
        // The backfill's series end where the live poll is.
        let d = demo(5, 50);
        let series = d.series(7, K - 100..=K + 5_000);
        assert_eq!(series.len(), 5_101);
        let live = &fresh.at(K + 5_000)[7];
        let (_, _, _, quote_usd) = d.labels(7);
        assert_eq!(
            Demo::gauges(series[5_100], quote_usd),
            live.values,
            "backfill and live disagree"
        );
    }

    #[test]
    fn values_are_valid_and_unique() {
        let mut d = demo(3, 400);
        let mut keys = std::collections::HashSet::new();
        for k in K..K + 50 {
            for m in d.at(k) {
                keys.insert((m.exchange.clone(), m.pair.clone()));
                for (i, v) in m.values.iter().enumerate() {
                    let v = v.unwrap();
                    assert!(v.is_finite());
                    if i != MarketGauge::PriceChangeRatio24h as usize {
                        assert!(v > 0.0, "{} {} gauge {i} = {v}", m.exchange, m.pair);
                    }
                }
                let [p, h, l, ..] = m.values;
                assert!(l.unwrap() <= p.unwrap() && p.unwrap() <= h.unwrap());
            }
        }
        assert_eq!(keys.len(), 400);
    }

    #[test]
    fn spikes_happen_and_end() {
        let mut d = demo(1, 300);
        let typical: Vec<f64> = d.traits.iter().map(|t| t.typical_volume).collect();
        let mut spiked = 0;
        for k in K..K + 200 {
            for (m, b) in d.at(k).iter().zip(&typical) {
                if m.values[MarketGauge::Volume24h as usize].unwrap() > 4.0 * b {
                    spiked += 1;
                }
            }
        }
        // 300 markets x 200 minutes x 0.002 ≈ 120 spikes of 4 polls each.
        assert!(spiked > 0, "no spike in 200 polls");
        assert!(spiked < 300 * 200 / 10, "spikes everywhere: {spiked}");
    }

    /// The first poll at which some market's price, volume or quote volume has
    /// been more than 3x its running average for 13 polls in a row (the alert's
    /// `for: 1m` at 5 s), with the guard's 30 samples: a model of when
    /// CryptoMarketSpike can fire with docker-compose.demo.yml, started at `start`.
    fn first_alert_worthy_poll(seed: u64, start: u64, polls: u64) -> Option<u64> {
        let mut d = Demo::new(&DemoConfig {
            seed,
            markets: 300,
            interval: Duration::from_secs(5),
        });
        let metrics = [
            MarketGauge::Price,
            MarketGauge::Volume24h,
            MarketGauge::VolumeQuote24h,
        ];
        let mut sums = vec![0.0; 300 * metrics.len()];
        let mut above = vec![0u32; sums.len()];
        for poll in 0..polls {
            for (i, m) in d.at(start + poll).iter().enumerate() {
                for (j, g) in metrics.iter().enumerate() {
                    let k = i * metrics.len() + j;
                    let v = m.values[*g as usize].unwrap();
                    sums[k] += v;
                    let avg = sums[k] / (poll + 1) as f64;
                    above[k] = if poll + 1 >= 30 && v > 3.0 * avg {
                        above[k] + 1
                    } else {
                        0
                    };
                    if above[k] >= 13 {
                        return Some(poll);
                    }
                }
            }
        }
        None
    }

    /// What README.md promises for docker-compose.demo.yml: an alert-worthy
    /// spike within minutes, whenever it starts and whatever the seed.
    #[test]
    fn a_five_second_demo_spikes_within_minutes() {
        let start = 1_790_000_000 / 5;
        for hour in 0..5 {
            assert!(
                first_alert_worthy_poll(1, start + hour * 720, 144).is_some(),
                "seed 1, started at hour {hour}: nothing within 12 minutes"
            );
        }
        for seed in 2..=20 {
            assert!(
                first_alert_worthy_poll(seed, start, 144).is_some(),
                "seed {seed}: nothing within 12 minutes"
            );
        }
    }

    #[test]
    fn spikes_last_the_same_time_at_any_interval() {
        let at = |secs| {
            Demo::new(&DemoConfig {
                seed: 1,
                markets: 1,
                interval: Duration::from_secs(secs),
            })
        };
        assert_eq!(at(60).spike_polls, 4);
        assert_eq!(at(5).spike_polls, 48);
        assert!((at(60).spike_chance - 0.002).abs() < 1e-12);
        assert!((at(5).spike_chance * 12.0 - 0.002).abs() < 1e-5);
    }
}
