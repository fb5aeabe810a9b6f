//! The `demo` source: seeded synthetic markets, no network at all.
//!
//! A few hundred markets (fictional exchanges, real-looking pairs) follow
//! geometric random walks; now and then one market's price or volume jumps
//! above 3x for a few polls, so the spike alerts and dashboards have something
//! to show. The same seed always gives the same sequence.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Fetched, PollFuture, Source, SourceKind};
use crate::admission::Admission;
use crate::domain::{Assets, MarketGauge, RawMarket};
use crate::settings::value::{self, AtMost};

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
const WINDOW: usize = 1_440;

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

impl Options {
    /// The settings with defaults applied; `interval` is the poll interval.
    pub fn resolve(&self, interval: Duration) -> DemoConfig {
        DemoConfig {
            seed: self.seed.unwrap_or(1),
            markets: self.markets.map_or(300, |m| m.0),
            interval,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    pub seed: u64,
    pub markets: usize,
    /// The poll interval, which the simulation's spikes are timed against.
    pub interval: Duration,
}

#[derive(Debug)]
struct SimMarket {
    exchange: &'static str,
    pair: String,
    assets: Assets,
    quote_usd: f64,
    price: f64,
    volume: f64,
    typical_volume: f64,
    history: VecDeque<f64>,
    /// Remaining polls of an ongoing spike, and its factors.
    spike_left: u32,
    spike_price: f64,
    spike_volume: f64,
}

#[derive(Debug)]
pub struct Demo {
    rng: fastrand::Rng,
    markets: Vec<SimMarket>,
    /// Per-poll chance that a market starts a spike, and its length in polls.
    spike_chance: f64,
    spike_polls: u32,
}

impl Demo {
    pub fn new(config: &DemoConfig) -> Self {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let mut markets = Vec::with_capacity(config.markets);
        'fill: for (quote, quote_usd) in QUOTES {
            for (base, base_usd, volume) in BASES {
                if base == quote {
                    continue;
                }
                for exchange in EXCHANGES {
                    if markets.len() == config.markets {
                        break 'fill;
                    }
                    // Exchanges disagree slightly, as real ones do.
                    let price = base_usd / quote_usd * (1.0 + (rng.f64() - 0.5) * 0.004);
                    let typical_volume = volume * (0.2 + rng.f64());
                    markets.push(SimMarket {
                        exchange,
                        pair: format!("{base}{quote}"),
                        assets: Assets::new(base, quote),
                        quote_usd,
                        price,
                        volume: typical_volume,
                        typical_volume,
                        history: VecDeque::with_capacity(WINDOW),
                        spike_left: 0,
                        spike_price: 1.0,
                        spike_volume: 1.0,
                    });
                }
            }
        }
        // More markets than the catalogue holds: numbered extra pairs.
        let mut n = 0;
        while markets.len() < config.markets {
            let exchange = EXCHANGES[n % EXCHANGES.len()];
            markets.push(SimMarket {
                exchange,
                pair: format!("tok{}usd", n / EXCHANGES.len()),
                assets: Assets::new(&format!("tok{}", n / EXCHANGES.len()), "usd"),
                quote_usd: 1.0,
                price: 1.0 + rng.f64() * 10.0,
                volume: 100_000.0,
                typical_volume: 100_000.0,
                history: VecDeque::with_capacity(WINDOW),
                spike_left: 0,
                spike_price: 1.0,
                spike_volume: 1.0,
            });
            n += 1;
        }
        let minutes = config.interval.as_secs_f64() / 60.0;
        let spike_chance = 1.0 - (1.0 - SPIKES_PER_MARKET_MINUTE).powf(minutes);
        let spike_polls = (SPIKE_DURATION.as_secs_f64() / config.interval.as_secs_f64().max(1e-3))
            .ceil()
            .clamp(1.0, f64::from(u32::MAX)) as u32;
        Self {
            rng,
            markets,
            spike_chance,
            spike_polls,
        }
    }

    /// Standard normal sample (Box–Muller).
    fn gauss(rng: &mut fastrand::Rng) -> f64 {
        let u1 = rng.f64().max(f64::MIN_POSITIVE);
        let u2 = rng.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn step(&mut self) -> Vec<RawMarket> {
        let rng = &mut self.rng;
        let (spike_chance, spike_polls) = (self.spike_chance, self.spike_polls);
        let mut out = Vec::with_capacity(self.markets.len());
        for m in &mut self.markets {
            m.price *= (0.002 * Self::gauss(rng)).exp();
            // Volume mean-reverts towards its typical level.
            let drift = 0.05 * (m.typical_volume / m.volume).ln();
            m.volume *= (drift + 0.02 * Self::gauss(rng)).exp();
            if m.spike_left == 0 && rng.f64() < spike_chance {
                m.spike_left = spike_polls;
                // Half the spikes hit the price, all of them the volume.
                m.spike_price = if rng.bool() { 3.5 + rng.f64() } else { 1.0 };
                m.spike_volume = 8.0 + rng.f64() * 4.0;
            }
            let (pf, vf) = if m.spike_left > 0 {
                m.spike_left -= 1;
                (m.spike_price, m.spike_volume)
            } else {
                (1.0, 1.0)
            };
            let price = m.price * pf;
            if m.history.len() == WINDOW {
                m.history.pop_front();
            }
            m.history.push_back(price);
            let open = m.history.front().copied().unwrap_or(price);
            let high = m.history.iter().copied().fold(f64::MIN, f64::max);
            let low = m.history.iter().copied().fold(f64::MAX, f64::min);
            let volume = m.volume * vf;
            let mut values = [None; MarketGauge::COUNT];
            values[MarketGauge::Price as usize] = Some(price);
            values[MarketGauge::PriceHigh24h as usize] = Some(high);
            values[MarketGauge::PriceLow24h as usize] = Some(low);
            values[MarketGauge::PriceChangeRatio24h as usize] = Some(price / open - 1.0);
            values[MarketGauge::Volume24h as usize] = Some(volume);
            values[MarketGauge::VolumeQuote24h as usize] = Some(volume * price);
            values[MarketGauge::VolumeUsd24h as usize] = Some(volume * price * m.quote_usd);
            out.push(RawMarket {
                exchange: m.exchange.to_owned(),
                pair: m.pair.clone(),
                assets: Some(m.assets.clone()),
                values,
            });
        }
        out
    }
}

impl Source for Demo {
    fn kind(&self) -> SourceKind {
        SourceKind::Demo
    }

    fn poll(&mut self, mut admission: Admission) -> PollFuture<'_> {
        admission.extend(self.step());
        Box::pin(async move { Ok(Fetched::new(admission)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (x, y) = (a.step(), b.step());
        assert_eq!(x, y);
        assert_eq!(x.len(), 300);
        assert_ne!(demo(8, 300).step(), x);
        assert_eq!(demo(1, 1000).step().len(), 1000);
    }

    #[test]
    fn values_are_valid_and_unique() {
        let mut d = demo(3, 400);
        let mut keys = std::collections::HashSet::new();
        for _ in 0..50 {
            for m in d.step() {
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
        let base: Vec<f64> = d
            .step()
            .iter()
            .map(|m| m.values[MarketGauge::Volume24h as usize].unwrap())
            .collect();
        let mut spiked = 0;
        for _ in 0..200 {
            for (m, b) in d.step().iter().zip(&base) {
                if m.values[MarketGauge::Volume24h as usize].unwrap() > 3.0 * b {
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
    /// CryptoMarketSpike can fire with docker-compose.demo.yml.
    fn first_alert_worthy_poll(seed: u64, polls: usize) -> Option<usize> {
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
            for (i, m) in d.step().iter().enumerate() {
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

    /// What README.md promises for docker-compose.demo.yml: the default seed
    /// gives an alert-worthy spike within 5 minutes, and every seed tried one
    /// within 12 minutes.
    #[test]
    fn a_five_second_demo_spikes_within_minutes() {
        let first = first_alert_worthy_poll(1, 60);
        assert!(first.is_some(), "seed 1: nothing within 5 minutes");
        for seed in 2..=20 {
            assert!(
                first_alert_worthy_poll(seed, 144).is_some(),
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
