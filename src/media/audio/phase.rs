//! When does the host's mixer tick? Sans-IO: arrival times come in as
//! microseconds on the caller's clock.
//!
//! The mixer sends every listener one datagram right after each tick, so the
//! arrival times of the mix, taken modulo the frame period, cluster around
//! the tick's phase on our clock (plus the host's mixing time and the one-way
//! network delay, both well under a millisecond on a LAN). A client that
//! knows that phase can
//!
//! - capture and send its frame a few milliseconds *before* the tick, so the
//!   host mixes it at once instead of holding it for up to a frame, and
//! - play a mix frame a moment *after* it arrives, instead of up to a frame
//!   later,
//!
//! which takes up to two frame periods out of the mouth-to-ear delay. The
//! estimate is the 10th and 90th percentile of the recent arrival phases
//! (unwrapped around their circular mean, so a cluster straddling the period
//! boundary is handled), robust against the odd late packet.

use std::collections::VecDeque;

/// Arrivals kept (two seconds of 20 ms frames).
const KEEP: usize = 100;
/// Arrivals needed before an estimate is given.
const MIN_ARRIVALS: usize = 10;

#[derive(Debug, Clone)]
/// Estimates where in each period (the host's 20 ms mix tick) packets
/// arrive, from the last 100 arrival times taken modulo the period. Sans-IO:
/// arrival times (µs, any monotonic clock) are passed in.
pub struct TickPhase {
    period_us: u64,
    phases: VecDeque<u64>,
}

/// Where in the period the mix arrives, µs on the caller's clock modulo the
/// period. `late` may exceed the period (the window wraps); `late - early`
/// is the arrival spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrivalWindow {
    /// Earliest arrival phase, µs into the period.
    pub early: u64,
    /// Latest arrival phase, µs, measured from the same period start as
    /// `early` (may exceed the period when the window wraps).
    pub late: u64,
}

impl TickPhase {
    /// An estimator for a period of `period_us` µs (at least 1).
    pub fn new(period_us: u64) -> TickPhase {
        TickPhase { period_us: period_us.max(1), phases: VecDeque::with_capacity(KEEP) }
    }

    /// The period, µs.
    pub fn period_us(&self) -> u64 {
        self.period_us
    }

    /// A mix datagram arrived at `now_us`.
    pub fn arrival(&mut self, now_us: u64) {
        if self.phases.len() == KEEP {
            self.phases.pop_front();
        }
        self.phases.push_back(now_us % self.period_us);
    }

    /// The 10th–90th percentile window of recent arrival phases, once enough
    /// arrivals are known.
    pub fn window(&self) -> Option<ArrivalWindow> {
        if self.phases.len() < MIN_ARRIVALS {
            return None;
        }
        let t = self.period_us as f64;
        let (mut s, mut c) = (0.0f64, 0.0f64);
        for &p in &self.phases {
            let a = std::f64::consts::TAU * p as f64 / t;
            s += a.sin();
            c += a.cos();
        }
        let centre = (s.atan2(c) / std::f64::consts::TAU * t).rem_euclid(t);
        let mut d: Vec<f64> = self
            .phases
            .iter()
            .map(|&p| (p as f64 - centre + t / 2.0).rem_euclid(t) - t / 2.0)
            .collect();
        d.sort_by(f64::total_cmp);
        let at = |q: f64| d[((d.len() - 1) as f64 * q).round() as usize];
        let early = (centre + at(0.1)).rem_euclid(t);
        let spread = (at(0.9) - at(0.1)).max(0.0);
        Some(ArrivalWindow { early: early as u64, late: (early + spread) as u64 })
    }
}

/// How far (µs, in `-period/2..period/2`) an event now due at phase `at`
/// must move to fall at phase `want` instead.
pub fn shift(period_us: u64, at: u64, want: i64) -> i64 {
    let t = period_us.max(1) as i64;
    (want - at as i64 + t / 2).rem_euclid(t) - t / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 20_000;

    #[test]
    fn nothing_until_enough_arrivals() {
        let mut p = TickPhase::new(T);
        for k in 0..9 {
            p.arrival(k * T + 3_000);
        }
        assert_eq!(p.window(), None);
        p.arrival(9 * T + 3_000);
        assert_eq!(p.window(), Some(ArrivalWindow { early: 3_000, late: 3_000 }));
    }

    #[test]
    fn finds_the_phase_despite_jitter_and_outliers() {
        let mut p = TickPhase::new(T);
        for k in 0..100u64 {
            // 7 ms ± 0.4 ms, and every 20th packet 6 ms late.
            let jitter = (k * 37 % 9) * 100;
            let late = if k % 20 == 0 { 6_000 } else { 0 };
            p.arrival(1_000_000 + k * T + 6_600 + jitter + late);
        }
        let w = p.window().unwrap();
        assert!((6_600..=6_800).contains(&w.early), "{w:?}");
        assert!((7_200..=7_500).contains(&w.late), "{w:?}");
    }

    #[test]
    fn a_cluster_across_the_period_boundary_is_one_cluster() {
        let mut p = TickPhase::new(T);
        for k in 0..50u64 {
            // Alternating 19.6 ms and 0.4 ms: the same instant ± 0.4 ms.
            p.arrival(k * T + if k % 2 == 0 { 19_600 } else { T + 400 });
        }
        let w = p.window().unwrap();
        assert!((19_500..=19_700).contains(&w.early), "{w:?}");
        assert!((20_300..=20_500).contains(&w.late), "{w:?} wraps past the period");
    }

    #[test]
    fn shift_takes_the_short_way_round() {
        assert_eq!(shift(T, 1_000, 3_000), 2_000);
        assert_eq!(shift(T, 3_000, 1_000), -2_000);
        assert_eq!(shift(T, 19_000, 1_000), 2_000);
        assert_eq!(shift(T, 1_000, 19_000), -2_000);
        assert_eq!(shift(T, 5_000, -2_000), -7_000);
    }
}
