//! A source's reference listing of symbols (Kraken AssetPairs, Binance
//! exchangeInfo): what a ticker entry's symbol means (its assets), and back
//! from our `pair` label to a symbol for the candle endpoints. Fetched on a
//! [`Refresh`] schedule, read by the ticker parser on a blocking thread.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;

use super::{Fetched, Refresh, SourceError, parse_blocking};
use crate::admission::Admission;
use crate::domain::{Assets, RejectReason};
use crate::upstream::{Response, Upstream};

/// How often a listing is fetched, and retried after a failure.
const EVERY: Duration = Duration::from_secs(3_600);
const RETRY: Duration = Duration::from_secs(300);

/// A ticker parser: the body, the listing, and a fresh sink per page.
pub type TickerParser =
    fn(&[u8], &HashMap<String, Assets>, &dyn Fn() -> Admission) -> Result<Admission, SourceError>;

pub struct Listing {
    /// Upstream's symbol → assets.
    symbols: Arc<HashMap<String, Assets>>,
    /// Our `pair` label → upstream's symbol.
    names: HashMap<String, String>,
    refresh: Refresh,
    /// For the log line of a failed refresh: the source and its endpoint.
    source: &'static str,
    what: &'static str,
}

impl fmt::Debug for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listing")
            .field("what", &self.what)
            .field("symbols", &self.symbols.len())
            .finish_non_exhaustive()
    }
}

impl Listing {
    pub fn new(source: &'static str, what: &'static str) -> Self {
        Self {
            symbols: Arc::default(),
            names: HashMap::new(),
            refresh: Refresh::new(EVERY, RETRY),
            source,
            what,
        }
    }

    /// When due, GETs the listing at `url` (counted in `fetched`) and reads
    /// it with `parse`. `Some` with what `parse` read, for the caller to
    /// [`Listing::install`]; `None` when nothing was due, or when a failure
    /// keeps the listing there is (see [`Refresh::settle`]).
    pub async fn update<T>(
        &mut self,
        upstream: &Upstream,
        url: &str,
        fetched: &mut Fetched,
        parse: impl FnOnce(&Response) -> Result<T, SourceError>,
    ) -> Result<Option<T>, SourceError> {
        if !self.refresh.is_due() {
            return Ok(None);
        }
        let result = upstream.get(url, HeaderMap::new()).await;
        fetched.requests += 1;
        let have_one = !self.symbols.is_empty();
        let read = result.and_then(|r| parse(&r));
        self.refresh.settle(read, have_one, self.source, self.what)
    }

    /// Swaps in a new listing. Where several symbols name one pair (Kraken's
    /// key and altname), the smallest serves the candles, so the choice does
    /// not depend on hash order.
    pub fn install(&mut self, symbols: HashMap<String, Assets>) {
        self.names.clear();
        for (symbol, assets) in &symbols {
            let slot = self
                .names
                .entry(assets.pair())
                .or_insert_with(|| symbol.clone());
            if symbol < slot {
                slot.clone_from(symbol);
            }
        }
        self.symbols = Arc::new(symbols);
    }

    /// Reads a ticker answer through `parse` against the listing, on a
    /// blocking thread, into `admission`'s filter. An entry the listing does
    /// not know (a pair listed since) brings the next refresh forward.
    pub async fn read_ticker(
        &mut self,
        response: Response,
        admission: &Admission,
        parse: TickerParser,
    ) -> Result<Admission, SourceError> {
        let symbols = self.symbols.clone();
        let filter = admission.filter();
        let read = parse_blocking(move || {
            parse(&response.body, &symbols, &|| Admission::new(filter.clone()))
        })
        .await?;
        if read.rejections().values[RejectReason::UnknownPair as usize] > 0 {
            self.refresh.hurry();
        }
        Ok(read)
    }

    /// Upstream's symbol for our `pair` label, from the last listing read.
    pub fn symbol(&self, pair: &str) -> Result<&str, SourceError> {
        self.names
            .get(pair)
            .map(String::as_str)
            .ok_or_else(|| SourceError::Api(format!("no {} symbol is named {pair}", self.source)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_symbol_of_a_pair_serves_its_candles() {
        let assets = |pair: &str| {
            let (base, quote) = pair.split_at(3);
            Assets::new(base, quote)
        };
        let mut listing = Listing::new("kraken", "AssetPairs");
        listing.install(HashMap::from([
            ("XXBTZUSD".to_owned(), assets("btcusd")),
            ("XBTUSD".to_owned(), assets("btcusd")),
            ("XETHZEUR".to_owned(), assets("etheur")),
        ]));
        assert_eq!(listing.symbol("btcusd").unwrap(), "XBTUSD");
        assert_eq!(listing.symbol("etheur").unwrap(), "XETHZEUR");
        assert_eq!(
            listing.symbol("solusd").unwrap_err().to_string(),
            "upstream reported an error: no kraken symbol is named solusd"
        );
        assert_eq!(listing.symbols.len(), 3);
    }
}
