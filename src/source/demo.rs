//! The `demo` source: seeded synthetic markets, no network at all.
//!
//! A few hundred markets (fictional exchanges, real-looking pairs) follow
//! geometric random walks; now and then one market's price or volume jumps
//! above 3x for a few polls, so the spike alerts and dashboards have something
//! to show. The same seed always gives the same sequence.

use std::collections::VecDeque;

use super::{Fetched, PollFuture, Source, SourceKind};
use crate::config::DemoConfig;
use crate::domain::{Assets, Gauge, RawMarket};

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

/// Per-poll chance that a market starts a spike, and how long one lasts.
const SPIKE_CHANCE: f64 = 0.000_5;
const SPIKE_POLLS: u32 = 4;
/// Polls kept for the rolling 24h high/low (one day at a 60s interval).
const WINDOW: usize = 1_440;

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
        Self { rng, markets }
    }

    /// Standard normal sample (Box–Muller).
    fn gauss(rng: &mut fastrand::Rng) -> f64 {
        let u1 = rng.f64().max(f64::MIN_POSITIVE);
        let u2 = rng.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn step(&mut self) -> Vec<RawMarket> {
        let rng = &mut self.rng;
        let mut out = Vec::with_capacity(self.markets.len());
        for m in &mut self.markets {
            m.price *= (0.002 * Self::gauss(rng)).exp();
            // Volume mean-reverts towards its typical level.
            let drift = 0.05 * (m.typical_volume / m.volume).ln();
            m.volume *= (drift + 0.02 * Self::gauss(rng)).exp();
            if m.spike_left == 0 && rng.f64() < SPIKE_CHANCE {
                m.spike_left = SPIKE_POLLS;
                // Half the spikes hit the price, all of them the volume.
                m.spike_price = if rng.bool() { 3.5 + rng.f64() } else { 1.0 };
                m.spike_volume = 3.5 + rng.f64() * 2.0;
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
            let mut values = [None; Gauge::COUNT];
            values[Gauge::Price as usize] = Some(price);
            values[Gauge::PriceHigh24h as usize] = Some(high);
            values[Gauge::PriceLow24h as usize] = Some(low);
            values[Gauge::PriceChangeRatio24h as usize] = Some(price / open - 1.0);
            values[Gauge::Volume24h as usize] = Some(volume);
            values[Gauge::VolumeQuote24h as usize] = Some(volume * price);
            values[Gauge::VolumeUsd24h as usize] = Some(volume * price * m.quote_usd);
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

    fn poll(&mut self) -> PollFuture<'_> {
        let markets = self.step();
        Box::pin(async move {
            Ok(Fetched {
                markets,
                ..Fetched::default()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo(seed: u64, markets: usize) -> Demo {
        Demo::new(&DemoConfig { seed, markets })
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
                    if i != Gauge::PriceChangeRatio24h as usize {
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
            .map(|m| m.values[Gauge::Volume24h as usize].unwrap())
            .collect();
        let mut spiked = 0;
        for _ in 0..200 {
            for (m, b) in d.step().iter().zip(&base) {
                if m.values[Gauge::Volume24h as usize].unwrap() > 3.0 * b {
                    spiked += 1;
                }
            }
        }
        // 300 markets x 200 polls x 0.0005 ≈ 30 spikes of 4 polls each.
        assert!(spiked > 0, "no spike in 200 polls");
        assert!(spiked < 300 * 200 / 10, "spikes everywhere: {spiked}");
    }
}
