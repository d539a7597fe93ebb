//! What the decoder targets share: each accepted message's events folded, with the book
//! its feed left, into a window builder per symbol (NativeVenueWindows does the same from Python),
//! every window's features checked finite.

use std::collections::HashMap;

use _core::batch::{Events, Rejects};
use _core::features::{BookView, Event, FeatureParams};
use _core::windows::{Stack, WindowBuilder, WindowConfig};

pub struct Folder {
    tick: i64,
    builders: HashMap<u32, WindowBuilder>,
    out: Stack,
    pub windows: usize,
}

impl Folder {
    /// `tick` in the feed's price units (a fuzzed byte picks it: the features divide by it).
    pub fn new(tick: i64) -> Self {
        Folder { tick, builders: HashMap::new(), out: Stack::default(), windows: 0 }
    }

    /// The events message `msg` added (`from` on), unless it was refused (`rejected` before it),
    /// into its symbol's builder, read against `book`.
    pub fn message<'b, B: BookView + 'b>(
        &mut self,
        events: &Events,
        from: usize,
        rejects: &Rejects,
        rejected: usize,
        msg: usize,
        book: impl Fn(u32) -> Option<&'b B>,
    ) {
        if rejects.len() > rejected || events.len() == from {
            return; // a refused message's events are never folded (the reference raises instead)
        }
        // a message's events by symbol, in the order they come (a Kraken v2 message carries several books)
        let mut by_symbol: Vec<(u32, Vec<Event>)> = Vec::new();
        for i in from..events.len() {
            let (e, m) = events.get(i);
            assert_eq!(m, msg, "an event carries its message's index");
            let ev = Event {
                kind: e.kind,
                side: e.side,
                flags: e.flags as i64,
                ts: e.ts,
                seq: e.seq,
                price: e.price,
                size: e.size,
            };
            match by_symbol.iter_mut().find(|(s, _)| *s == e.symbol) {
                Some((_, evs)) => evs.push(ev),
                None => by_symbol.push((e.symbol, vec![ev])),
            }
        }
        for (symbol, evs) in by_symbol {
            let Some(book) = book(symbol) else { continue };
            let tick = self.tick;
            let builder = self.builders.entry(symbol).or_insert_with(|| {
                let params = FeatureParams::new(tick, 10, vec![1, 5, 10], 1_000_000_000, 1_000_000_000).expect("valid");
                let config = WindowConfig { n_events: 32, n_rows: 8, every_events: Some(4), ..WindowConfig::default() };
                WindowBuilder::new(config, params)
            });
            if builder.push(book, &evs) {
                let before = self.out.features.len();
                builder.emit(&mut self.out, msg as i64);
                let row = &self.out.features[before..];
                assert!(row.iter().all(|x| x.is_finite()), "non-finite features in a window");
                self.windows += 1;
                self.out = Stack::default();
            }
        }
    }
}
