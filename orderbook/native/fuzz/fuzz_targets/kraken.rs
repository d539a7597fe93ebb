//! The Kraken decoder and its books (src/kraken.rs) on a stream of messages, one per line (after a first
//! byte that picks the window features' tick): v1 snapshots, updates with their checksums and trades as the
//! capture seeds hold them, and the same written as v2 objects, mangled by libFuzzer. As the binance target:
//! every message decoded and applied or refused, never a panic nor an overflow (built with debug
//! assertions: a pair's precision comes from what its messages print, so every scaling is checked); the
//! book a message touched keeps its layout (`L2::check`); each accepted message's events folded into a
//! window builder with the book the feed left, features finite.
#![no_main]

use _core::batch::{Events, MessageFeed, Rejects};
use _core::kraken::{Kraken, V2_DEFAULT_DEPTH};
use libfuzzer_sys::fuzz_target;

#[path = "windows.rs"]
mod windows;

const TICKS: [i64; 4] = [1, 10, 100_000, 7]; // a pair's price units are its printed decimals

fuzz_target!(|data: &[u8]| {
    let Some((&pick, stream)) = data.split_first() else { return };
    let mut feed = Kraken::new(None, true, Default::default(), V2_DEFAULT_DEPTH);
    let mut folder = windows::Folder::new(TICKS[pick as usize % TICKS.len()]);
    let (mut events, mut rejects) = (Events::default(), Rejects::default());
    for (i, raw) in stream.split(|&b| b == b'\n').enumerate() {
        let (from, rejected) = (events.len(), rejects.len());
        feed.record(raw, 1_618_678_133_000_000_000 + i as i64 * 1_000_000, i, &mut events, &mut rejects);
        folder.message(&events, from, &rejects, rejected, i, |sym| feed.book_of(sym));
        for at in from..events.len() {
            let e = events.get(at).0;
            if let Err(broken) = feed.book_of(e.symbol).map_or(Ok(()), |b| b.check()) {
                panic!("message {i} left the book of symbol {} broken: {broken}", e.symbol);
            }
        }
    }
});
