//! The Coinbase decoder and its books (src/coinbase.rs) on a stream of messages, one per line (after a first
//! byte that picks the window features' tick): the level2 capture's products and a simulated full channel as
//! the seeds hold them, mangled by libFuzzer. As the kraken target: every message decoded and applied or
//! refused, never a panic nor an overflow (built with debug assertions); the book a message touched keeps
//! its layout (`L2::check`, `L3::check`: queues and totals); each accepted message's events folded into a
//! window builder with the book the feed left, features finite.
#![no_main]

use _core::batch::{Events, MessageFeed, Rejects};
use _core::coinbase::Coinbase;
use libfuzzer_sys::fuzz_target;

#[path = "windows.rs"]
mod windows;

const TICKS: [i64; 4] = [1_000_000, 1, 100, 7]; // Coinbase prices are in 1e-8 of the quote currency

fuzz_target!(|data: &[u8]| {
    let Some((&pick, stream)) = data.split_first() else { return };
    let mut feed = Coinbase::new(None, true, false);
    let mut folder = windows::Folder::new(TICKS[pick as usize % TICKS.len()]);
    let (mut events, mut rejects) = (Events::default(), Rejects::default());
    for (i, raw) in stream.split(|&b| b == b'\n').enumerate() {
        let (from, rejected) = (events.len(), rejects.len());
        feed.record(raw, 1_618_678_133_000_000_000 + i as i64 * 1_000_000, i, &mut events, &mut rejects);
        // a message touches one product, whose book is either kind: each call folds the products of its kind
        folder.message(&events, from, &rejects, rejected, i, |sym| feed.book_l2(sym));
        folder.message(&events, from, &rejects, rejected, i, |sym| feed.book_l3(sym));
        for at in from..events.len() {
            let sym = events.get(at).0.symbol;
            let checked = match (feed.book_l2(sym), feed.book_l3(sym)) {
                (Some(b), _) => b.check(),
                (_, Some(b)) => b.check(),
                _ => Ok(()),
            };
            if let Err(broken) = checked {
                panic!("message {i} left the book of symbol {sym} broken: {broken}");
            }
        }
    }
});
