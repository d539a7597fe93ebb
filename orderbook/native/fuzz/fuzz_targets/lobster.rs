//! The LOBSTER decoder and its order books (src/lobster.rs) on a stream of message rows, one a line
//! (after a first byte that picks the window features' tick), each keyed by a symbol its line's own
//! first byte picks, seeded with simulated files and mangled by libFuzzer. As the itch target: decoded
//! and applied or refused, never a panic nor an overflow; the book a row touched keeps its queues and
//! totals (`L3::check`); each accepted row's event folded into a window builder with the book the feed
//! left, features finite.
#![no_main]

use _core::batch::{Events, Rejects};
use _core::lobster::Lobster;
use libfuzzer_sys::fuzz_target;

#[path = "windows.rs"]
mod windows;

const TICKS: [i64; 4] = [100, 1, 10_000, 7]; // LOBSTER prices are in 1e-4 dollars
const KEYS: [&[u8]; 4] = [b"AAPL", b"MSFT", b"", b"\xff\xfe"]; // an empty key is refused: no symbol

fuzz_target!(|data: &[u8]| {
    let Some((&pick, stream)) = data.split_first() else { return };
    let mut feed = Lobster::new(None, true);
    let mut folder = windows::Folder::new(TICKS[pick as usize % TICKS.len()]);
    let (mut events, mut rejects) = (Events::default(), Rejects::default());
    for (i, line) in stream.split(|&c| c == b'\n').enumerate() {
        // most lines keep the first key: a book long enough to build windows
        let (key, raw) = match line.split_first() {
            Some((&k, rest)) if k >= 0xf0 => (KEYS[k as usize % KEYS.len()], rest),
            _ => (KEYS[0], line),
        };
        let (from, rejected) = (events.len(), rejects.len());
        feed.record(Some(key), raw, i as i64, i, (&mut events, &mut rejects));
        folder.message(&events, from, &rejects, rejected, i, |sym| feed.book_by_name(feed.names.name(sym)));
        if let Some(e) = (events.len() > from).then(|| events.get(from).0) {
            if let Err(broken) = feed.book_by_name(feed.names.name(e.symbol)).map_or(Ok(()), |b| b.check()) {
                panic!("row {i} left the book of {} broken: {broken}", feed.names.name(e.symbol));
            }
        }
    }
});
