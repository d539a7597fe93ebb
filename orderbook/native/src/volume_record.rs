//! `orderbook/volume_record.py`: a book's record of its own realized traded volumes, kept by its
//! window builder, and the 10/50/90% quantiles of it that each window carries (`volume_record`).
//!
//! Bit for bit with the reference: the lots are summed as ints (i128, as Python's are exact), each
//! known volume is `ln_1p` of the lots as f64 (the libm CPython's `math.log1p` calls), the age
//! weights are `powf` (the libm `pow` CPython's float `**` calls), and the quantiles add the weights
//! one by one in the reference's order: values ascending, equal values oldest first (numpy's stable
//! argsort), then `np.cumsum`, then `np.searchsorted` on the cumulative share.

use std::collections::VecDeque;
use std::sync::OnceLock;

use crate::book::kind;
use crate::features::Event;

/// `volume_record.VOLUME_HORIZONS`: messages, the served forecasts' horizons.
pub const VOLUME_HORIZONS: [u64; 2] = [10, 100];
/// `volume_record.HALFLIFE`: windows of the book.
const HALFLIFE: f64 = 64.0;
/// `volume_record.KEEP`: the newest known volumes a quantile reads, per horizon.
pub const KEEP: usize = 512;
/// `volume_record.MIN_KNOWN`: the fewest known volumes the quantiles are read off.
const MIN_KNOWN: usize = 10;
/// `volume_record.LEVELS`.
pub const LEVELS: [f64; 3] = [0.1, 0.5, 0.9];

/// `orderbook.events.FLAG_NON_PRINTABLE`: an execution not to be counted as volume.
const FLAG_NON_PRINTABLE: i64 = 32;

/// `volume_record.traded_lots`: the lots a message traded, its EXECUTE and TRADE events' sizes, the
/// non-printable executions left out; in i128, which no message's i64 sizes can overflow.
pub fn traded_lots(events: &[Event]) -> i128 {
    events
        .iter()
        .filter(|e| (e.kind == kind::EXECUTE || e.kind == kind::TRADE) && e.flags & FLAG_NON_PRINTABLE == 0)
        .map(|e| e.size as i128)
        .sum()
}

/// `volume_record.AGE_WEIGHTS`: 0.5^(age / HALFLIFE) for an age in windows (0: the newest).
fn age_weights() -> &'static [f64; KEEP] {
    static WEIGHTS: OnceLock<[f64; KEEP]> = OnceLock::new();
    WEIGHTS.get_or_init(|| std::array::from_fn(|age| 0.5f64.powf(age as f64 / HALFLIFE)))
}

/// One horizon's known volumes (`VolumeRecord.known[k]`), and their order as `ewma_quantiles` sorts
/// them, kept as they come and go: sorting each window's 2 x 512 afresh made `push_batch` 30% slower
/// at the default config, 5 times at a window every 4 events.
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// oldest first, the newest KEEP
    values: VecDeque<f64>,
    /// the id of `values[0]`: ids number the values in the order they came
    first: u64,
    /// the ids by value, equal values oldest first: numpy's stable argsort of `values`
    order: Vec<u64>,
}

impl Known {
    /// As decoded: `values` oldest first, at most KEEP.
    pub fn new(values: Vec<f64>) -> Result<Self, String> {
        if values.len() > KEEP {
            return Err(format!("{} known volumes, {KEEP} are kept", values.len()));
        }
        if let Some(v) = values.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            return Err(format!("a known volume of {v}: log1p of the lots traded is finite and not negative"));
        }
        let mut order: Vec<u64> = (0..values.len() as u64).collect();
        order.sort_by(|&a, &b| values[a as usize].total_cmp(&values[b as usize])); // stable
        Ok(Known { values: values.into(), first: 0, order })
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Oldest first.
    pub fn values(&self) -> impl ExactSizeIterator<Item = f64> + '_ {
        self.values.iter().copied()
    }

    fn value(&self, id: u64) -> f64 {
        self.values[(id - self.first) as usize]
    }

    /// Append `v`, the oldest going once KEEP are known (`deque(maxlen=KEEP).append`).
    fn push(&mut self, v: f64) {
        if self.values.len() == KEEP {
            let (id, old) = (self.first, self.values[0]);
            // the first of the values equal to the oldest is the oldest
            let at = self.order.partition_point(|&j| self.value(j).total_cmp(&old).is_lt());
            debug_assert_eq!(self.order[at], id);
            self.order.remove(at);
            self.values.pop_front();
            self.first += 1;
        }
        let id = self.first + self.values.len() as u64;
        self.values.push_back(v);
        let at = self.order.partition_point(|&j| self.value(j).total_cmp(&v).is_le()); // after the equal ones
        self.order.insert(at, id);
    }

    /// `volume_record.ewma_quantiles` (at HALFLIFE), appended to `out`: the cumulative weights in value
    /// order, added one by one as `np.cumsum` does, each share as the reference divides it
    /// (`cum / cum[-1]`), the first to reach a level as `np.searchsorted` finds it.
    fn quantiles(&self, out: &mut Vec<f64>) {
        let n = self.order.len();
        let newest = self.first + n as u64 - 1;
        let weights = age_weights();
        let mut cum = [0.0; KEEP];
        let mut sum = 0.0;
        for (c, &id) in cum.iter_mut().zip(&self.order) {
            sum += weights[(newest - id) as usize];
            *c = sum;
        }
        let cum = &cum[..n];
        for level in LEVELS {
            let at = cum.partition_point(|&c| c / sum < level).min(n - 1);
            out.push(self.value(self.order[at]));
        }
    }
}

/// `volume_record.VolumeRecord`: `message` after each message, `window_cut` once a window is emitted
/// (a window read without being emitted enters no record), `quantiles` as a window is written.
#[derive(Clone, Debug, Default)]
pub struct VolumeRecord {
    /// messages so far
    pub messages: u64,
    /// lots traded in them
    pub traded: i128,
    /// per horizon: (messages, traded) at each emitted window whose horizon has not ended, oldest first
    pub pending: [VecDeque<(u64, i128)>; 2],
    /// per horizon: log1p of the volume traded over the horizon of each window whose horizon ended
    pub known: [Known; 2],
}

impl VolumeRecord {
    /// `VolumeRecord.message`: one message that traded `lots`.
    pub fn message(&mut self, lots: i128) {
        self.messages += 1;
        self.traded += lots;
        for ((&h, pending), known) in VOLUME_HORIZONS.iter().zip(&mut self.pending).zip(&mut self.known) {
            while let Some(&(at, traded_then)) = pending.front() {
                if self.messages - at < h {
                    break;
                }
                pending.pop_front();
                known.push(((self.traded - traded_then) as f64).ln_1p());
            }
        }
    }

    /// `VolumeRecord.window_cut`: a window was emitted after the last message.
    pub fn window_cut(&mut self) {
        for pending in &mut self.pending {
            pending.push_back((self.messages, self.traded));
        }
    }

    /// `VolumeRecord.quantiles`, appended to `out`: (VOLUME_HORIZONS, LEVELS) row-major, NaN for a
    /// horizon with fewer than MIN_KNOWN known.
    pub fn quantiles(&self, out: &mut Vec<f64>) {
        for known in &self.known {
            if known.len() < MIN_KNOWN {
                out.extend([f64::NAN; LEVELS.len()]);
            } else {
                known.quantiles(out);
            }
        }
    }

    /// The check of `__setstate__` on a decoded record that `Known::new` does not make: each horizon's
    /// pending windows in order, none past the messages so far or with its horizon over (it would be
    /// known), as every run of the reference leaves them.
    pub fn check(&self) -> Result<(), String> {
        for (&h, pending) in VOLUME_HORIZONS.iter().zip(&self.pending) {
            let mut last = 0;
            let mut traded_last = 0;
            for &(at, traded_then) in pending {
                if at < last || at > self.messages || self.messages - at >= h {
                    return Err(format!("a window pending over {h} messages out of order or over at message {at}"));
                }
                // lots traded only add up: a volume read off these is never negative
                if traded_then < traded_last || traded_then > self.traded {
                    return Err(format!(
                        "a window pending over {h} messages after {traded_then} lots, of {} traded",
                        self.traded
                    ));
                }
                (last, traded_last) = (at, traded_then);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::BID;

    fn ev(k: i8, flags: i64, size: i64) -> Event {
        Event { kind: k, side: BID, flags, ts: 1, seq: 1, price: 100, size }
    }

    /// `ewma_quantiles` as the reference spells it: argsort afresh, the cumulative sum kept, searchsorted.
    fn sorted_afresh(values: &[f64]) -> Vec<f64> {
        let n = values.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
        let cum: Vec<f64> = order
            .iter()
            .scan(0.0, |sum, &i| {
                *sum += age_weights()[n - 1 - i];
                Some(*sum)
            })
            .collect();
        let total = cum[n - 1];
        LEVELS.iter().map(|&level| values[order[cum.partition_point(|&c| c / total < level).min(n - 1)]]).collect()
    }

    fn quantiles(known: &Known) -> Vec<f64> {
        let mut out = Vec::new();
        known.quantiles(&mut out);
        out
    }

    #[test]
    fn the_age_weights_are_the_floats_cpython_makes_of_the_references_expression() {
        use pyo3::types::PyAnyMethods;

        pyo3::Python::initialize();
        pyo3::Python::attach(|py| {
            for (age, w) in age_weights().iter().enumerate() {
                let expr = std::ffi::CString::new(format!("0.5 ** ({age} / 64)")).expect("no NUL");
                let want: f64 = py.eval(&expr, None, None).and_then(|x| x.extract()).expect("a float");
                assert_eq!(w.to_bits(), want.to_bits(), "age {age}");
            }
        });
    }

    #[test]
    fn traded_lots_are_the_printable_executions_and_trades_summed_past_i64() {
        let message = [
            ev(kind::TRADE, 0, 5),
            ev(kind::EXECUTE, 8, 7),
            ev(kind::EXECUTE, FLAG_NON_PRINTABLE | 16, 9),
            ev(kind::LEVEL_SET, 0, 40),
            ev(kind::ADD, 0, 11),
        ];
        assert_eq!(traded_lots(&message), 12);
        let huge = [ev(kind::TRADE, 0, i64::MAX), ev(kind::TRADE, 0, i64::MAX)];
        assert_eq!(traded_lots(&huge), 2 * i64::MAX as i128);
    }

    #[test]
    fn a_volume_counts_the_h_messages_after_its_window_and_is_known_from_the_hth() {
        // tests/test_volume_record.py's case
        let lots = [5, 0, 7, 1, 0, 0, 3, 2, 0, 4, 9, 0, 1];
        let mut r = VolumeRecord::default();
        for (i, &x) in lots.iter().enumerate() {
            r.message(x);
            if i == 1 {
                r.window_cut();
            }
            if i == 10 {
                assert_eq!(r.known[0].len(), 0);
            }
            if i == 11 {
                let want = (lots[2..12].iter().sum::<i128>() as f64).ln_1p();
                assert_eq!(r.known[0].values().collect::<Vec<_>>(), [want]);
            }
        }
        assert!(r.known[1].len() == 0 && r.pending[1].len() == 1);
        assert_eq!(r.check(), Ok(()));
    }

    #[test]
    fn the_quantiles_are_nan_until_ten_are_known_and_weigh_the_newest_most() {
        let mut r = VolumeRecord::default();
        let mut out = Vec::new();
        r.quantiles(&mut out);
        assert!(out.len() == 6 && out.iter().all(|x| x.is_nan()));
        r.known[0] = Known::new((0..9).map(f64::from).collect()).unwrap();
        out.clear();
        r.quantiles(&mut out);
        assert!(out.iter().all(|x| x.is_nan()));
        // the newest tenth weighs 16% of the total: past the 90% level, as it is not unweighted
        r.known[0] = Known::new([&[1.0; 90][..], &[2.0; 10]].concat()).unwrap();
        out.clear();
        r.quantiles(&mut out);
        assert_eq!(out[..3], [1.0, 1.0, 2.0]);
        assert!(out[3..].iter().all(|x| x.is_nan()));
    }

    #[test]
    fn the_order_kept_as_volumes_come_and_go_gives_the_quantiles_of_sorting_afresh() {
        // ties most of the time (log1p of small lots), the oldest going from the 513th on
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut known = Known::default();
        let mut all = Vec::new();
        for i in 0..3 * KEEP {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let v = ((seed % if i % 3 == 0 { 1000 } else { 6 }) as f64).ln_1p();
            known.push(v);
            all.push(v);
            let kept = &all[all.len().saturating_sub(KEEP)..];
            assert_eq!(known.values().collect::<Vec<_>>(), kept);
            let bits = |q: Vec<f64>| q.into_iter().map(f64::to_bits).collect::<Vec<_>>();
            assert_eq!(bits(quantiles(&known)), bits(sorted_afresh(kept)), "after {} volumes", i + 1);
            if i % 97 == 0 {
                let decoded = Known::new(kept.to_vec()).unwrap(); // ids renumbered: the same order
                assert_eq!(bits(quantiles(&decoded)), bits(sorted_afresh(kept)));
            }
        }
        assert_eq!(known.len(), KEEP);
        assert!(Known::new(vec![0.0; KEEP + 1]).is_err());
        for bad in [f64::NAN, f64::INFINITY, -0.5] {
            assert!(Known::new(vec![0.0, bad]).is_err()); // log1p of the lots traded: finite, not negative
        }
    }

    #[test]
    fn pending_windows_must_be_in_order_not_over_and_after_no_more_lots_than_traded() {
        let mut r = VolumeRecord { messages: 50, traded: 9, ..VolumeRecord::default() };
        r.pending[1] = [(10, 0), (30, 4)].into();
        assert_eq!(r.check(), Ok(()));
        r.pending[1] = [(10, 4), (30, 0)].into(); // lots traded only add up
        assert!(r.check().is_err());
        r.pending[1] = [(10, 0), (30, 10)].into(); // more than were traded
        assert!(r.check().is_err());
        r.pending[1] = [(30, 0), (10, 4)].into();
        assert!(r.check().is_err());
        r.pending[1] = [(51, 0)].into();
        assert!(r.check().is_err());
        r.pending[1].clear();
        r.pending[0] = [(40, 0)].into(); // its 10 messages are over: it would be known
        assert!(r.check().is_err());
    }
}
