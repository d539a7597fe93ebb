//! The Binance decoder and its books (src/binance.rs) on a stream of messages, one per line
//! (after a first byte that picks the window features' tick): diffs, snapshots, tickers and
//! trades as the capture seeds hold them, mangled by libFuzzer. Every message is decoded and
//! applied or refused, never a panic (in the worker a panic fails the partition's batch again
//! and again); the book a message touched keeps its layout (`L2::check`); each accepted
//! message's events go into a window builder with the book the feed left (`windows.rs`), whose
//! features stay finite. Built with debug assertions (`make fuzz`),
//! so an integer overflow is a panic too: the reference's Python ints never wrap.
#![no_main]

use _core::batch::{Events, MessageFeed, Rejects};
use _core::binance::Binance;
use libfuzzer_sys::fuzz_target;

#[path = "windows.rs"]
mod windows;

const TICKS: [i64; 4] = [1_000_000, 10_000, 100_000_000, 1]; // 0.01, 0.0001, 1, 1e-8 in 1e-8 units

fuzz_target!(|data: &[u8]| {
    let Some((&pick, stream)) = data.split_first() else { return };
    let mut feed = Binance::new(None, true);
    let mut folder = windows::Folder::new(TICKS[pick as usize % TICKS.len()]);
    let (mut events, mut rejects) = (Events::default(), Rejects::default());
    for (i, raw) in stream.split(|&b| b == b'\n').enumerate() {
        let (from, rejected) = (events.len(), rejects.len());
        feed.record(raw, 1_723_161_254_000_000_000 + i as i64 * 1_000_000, i, &mut events, &mut rejects);
        folder.message(&events, from, &rejects, rejected, i, |sym| feed.book_of(sym));
        if let Some(e) = (events.len() > from).then(|| events.get(from).0) {
            if let Err(broken) = feed.book_of(e.symbol).map_or(Ok(()), |b| b.check()) {
                panic!("message {i} left the book of symbol {} broken: {broken}", e.symbol);
            }
        }
    }
});
