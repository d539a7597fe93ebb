//! The ITCH 5.0 decoder and its order books (src/itch.rs) on a stream of length-prefixed
//! messages (the 2-byte big-endian prefix of a binary ITCH file, after a first byte that picks
//! the window features' tick), seeded with simulated days and mangled by libFuzzer. As the binance
//! target: decoded and applied or refused, never a panic nor an overflow; the book a message
//! touched keeps its queues and totals (`L3::check`); each accepted message's events folded into
//! a window builder with the book the feed left, features finite.
#![no_main]

use _core::batch::{Events, MessageFeed, Rejects};
use _core::itch::Itch;
use libfuzzer_sys::fuzz_target;

#[path = "windows.rs"]
mod windows;

const TICKS: [i64; 4] = [100, 1, 10_000, 7]; // ITCH prices are in 1e-4 dollars

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut stream)) = data.split_first() else { return };
    let mut feed = Itch::new(None, true);
    let mut folder = windows::Folder::new(TICKS[pick as usize % TICKS.len()]);
    let (mut events, mut rejects) = (Events::default(), Rejects::default());
    let mut i = 0;
    while let [a, b, rest @ ..] = stream {
        let n = (u16::from_be_bytes([*a, *b]) as usize).min(rest.len());
        let (raw, next) = rest.split_at(n);
        let (from, rejected) = (events.len(), rejects.len());
        feed.record(raw, i as i64, i, &mut events, &mut rejects);
        folder.message(&events, from, &rejects, rejected, i, |sym| feed.book_by_name(feed.names.name(sym)));
        if let Some(e) = (events.len() > from).then(|| events.get(from).0) {
            if let Err(broken) = feed.book_by_name(feed.names.name(e.symbol)).map_or(Ok(()), |b| b.check()) {
                panic!("message {i} left the book of {} broken: {broken}", feed.names.name(e.symbol));
            }
        }
        stream = next;
        i += 1;
    }
});
