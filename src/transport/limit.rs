//! Rate limits at the door: wrong passcodes and open connections.
//!
//! [`AttemptLimiter`] bounds online passcode guessing: at most
//! [`MAX_FAILURES`] passcode checks per source address per
//! [`ATTEMPT_WINDOW`] may fail, and once they have, the next request is
//! refused *before* any PAKE runs (so it costs the host no SPAKE2 work and
//! the attacker learns nothing). To be exact under concurrency, an attempt
//! counts from the moment it starts: a check in progress holds a slot until it
//! ends, a successful one gives its slot back, a failed (or abandoned) one
//! keeps it until the window has passed since it started. A request that
//! finds all slots held, some of them by checks still in progress, is told
//! [`Refusal::Busy`] (retry shortly) rather than "too many attempts".
//!
//! Sources are keyed by IP address, not port (a new port is free), and IPv6
//! addresses by their /64 prefix (one host usually owns a whole /64).
//!
//! [`ConnectionCaps`] bounds open connections per address and in total; the
//! [`SharedCaps`] guard gives a slot back when dropped.
//!
//! Both are sans-IO values: time is an argument, nothing here reads a clock.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failed passcode checks allowed per source in one window (issue 14: "the
/// sixth wrong attempt from one address within a minute is refused").
pub const MAX_FAILURES: usize = 5;
/// The sliding window for [`MAX_FAILURES`].
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);
/// Most sources the limiter tracks at once. Past it new sources are told
/// `Busy` until old entries expire: memory stays bounded under a flood of
/// source addresses, at the price of refusing newcomers during one.
pub const MAX_TRACKED_SOURCES: usize = 65_536;

/// The limiter's key for an address: IPv4 as is, IPv6 cut to its /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// Why a request is refused before any PAKE runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many wrong passcodes from this address; try again in {} s", retry_after.as_secs_f64().ceil())]
    TooManyAttempts { retry_after: Duration },
    #[error("passcode checks from this address are in progress; try again shortly")]
    Busy,
}

/// A started passcode check. Hand it back to [`AttemptLimiter::succeeded`]
/// or [`AttemptLimiter::failed`]; if it is dropped instead, the attempt
/// keeps its slot (answering `Busy`) until the window passes: a driver that
/// forgets errs on the safe side.
#[must_use = "report the attempt's outcome to the limiter"]
#[derive(Debug, PartialEq, Eq)]
pub struct AttemptTicket {
    key: IpAddr,
    id: u64,
}

#[derive(Debug)]
struct Attempt {
    id: u64,
    started: Instant,
    /// Still running (a slot held by a check in progress).
    pending: bool,
}

/// Per-source sliding-window limiter for passcode checks.
#[derive(Debug)]
pub struct AttemptLimiter {
    max_failures: usize,
    window: Duration,
    sources: HashMap<IpAddr, VecDeque<Attempt>>,
    next_id: u64,
}

impl Default for AttemptLimiter {
    fn default() -> AttemptLimiter {
        AttemptLimiter::new(MAX_FAILURES, ATTEMPT_WINDOW)
    }
}

impl AttemptLimiter {
    pub fn new(max_failures: usize, window: Duration) -> AttemptLimiter {
        AttemptLimiter {
            max_failures: max_failures.max(1),
            window,
            sources: HashMap::new(),
            next_id: 0,
        }
    }

    /// Asks to start a passcode check from `ip` at `now`. Call this before
    /// any SPAKE2 work.
    pub fn begin(&mut self, ip: IpAddr, now: Instant) -> Result<AttemptTicket, Refusal> {
        let key = source_key(ip);
        self.expire(key, now);
        if !self.sources.contains_key(&key) && self.sources.len() >= MAX_TRACKED_SOURCES {
            self.prune(now);
            if self.sources.len() >= MAX_TRACKED_SOURCES {
                return Err(Refusal::Busy);
            }
        }
        let attempts = self.sources.entry(key).or_default();
        if attempts.len() >= self.max_failures {
            let failed = attempts.iter().filter(|a| !a.pending).count();
            if failed >= self.max_failures {
                // The oldest failure frees its slot one window after it began.
                let oldest = attempts.iter().find(|a| !a.pending).map(|a| a.started).unwrap_or(now);
                let retry_after = (oldest + self.window).saturating_duration_since(now);
                return Err(Refusal::TooManyAttempts { retry_after });
            }
            return Err(Refusal::Busy);
        }
        let id = self.next_id;
        self.next_id += 1;
        attempts.push_back(Attempt { id, started: now, pending: true });
        Ok(AttemptTicket { key, id })
    }

    /// The check succeeded: its slot is given back.
    pub fn succeeded(&mut self, ticket: AttemptTicket) {
        if let Some(attempts) = self.sources.get_mut(&ticket.key) {
            attempts.retain(|a| a.id != ticket.id);
            if attempts.is_empty() {
                self.sources.remove(&ticket.key);
            }
        }
    }

    /// The check failed (wrong passcode, abort, timeout, lost connection):
    /// its slot stays taken until the window has passed since it began.
    pub fn failed(&mut self, ticket: AttemptTicket) {
        if let Some(attempt) =
            self.sources.get_mut(&ticket.key).and_then(|a| a.iter_mut().find(|a| a.id == ticket.id))
        {
            attempt.pending = false;
        }
    }

    /// Drops every expired entry (call now and then, e.g. once a minute).
    pub fn prune(&mut self, now: Instant) {
        let window = self.window;
        self.sources.retain(|_, attempts| {
            attempts.retain(|a| now.saturating_duration_since(a.started) < window);
            !attempts.is_empty()
        });
    }

    /// How many sources are tracked (for tests and stats).
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    fn expire(&mut self, key: IpAddr, now: Instant) {
        let window = self.window;
        if let Some(attempts) = self.sources.get_mut(&key) {
            // Attempts are in start order, so the expired ones are in front.
            while attempts
                .front()
                .is_some_and(|a| now.saturating_duration_since(a.started) >= window)
            {
                attempts.pop_front();
            }
            if attempts.is_empty() {
                self.sources.remove(&key);
            }
        }
    }
}

/// Default cap on connections from one address: enough for a machine that
/// runs a few dozen bots, far below what exhausts the host.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 64;
/// Default cap on connections in total.
pub const MAX_CONNECTIONS_TOTAL: usize = 1024;

/// Why a connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapRefusal {
    #[error("too many connections from this address (limit {limit})")]
    PerAddress { limit: usize },
    #[error("the host has too many connections (limit {limit})")]
    Total { limit: usize },
}

/// Open-connection counts per address (exact IP) and in total.
#[derive(Debug, Clone)]
pub struct ConnectionCaps {
    per_address: usize,
    total: usize,
    open: HashMap<IpAddr, usize>,
    open_total: usize,
}

impl Default for ConnectionCaps {
    fn default() -> ConnectionCaps {
        ConnectionCaps::new(MAX_CONNECTIONS_PER_ADDRESS, MAX_CONNECTIONS_TOTAL)
    }
}

impl ConnectionCaps {
    pub fn new(per_address: usize, total: usize) -> ConnectionCaps {
        ConnectionCaps { per_address, total, open: HashMap::new(), open_total: 0 }
    }

    /// Takes a slot for a connection from `ip`, or says which cap is full.
    pub fn try_open(&mut self, ip: IpAddr) -> Result<(), CapRefusal> {
        if self.open_total >= self.total {
            return Err(CapRefusal::Total { limit: self.total });
        }
        let count = self.open.entry(ip).or_default();
        if *count >= self.per_address {
            return Err(CapRefusal::PerAddress { limit: self.per_address });
        }
        *count += 1;
        self.open_total += 1;
        Ok(())
    }

    /// Gives back a slot taken by [`ConnectionCaps::try_open`].
    pub fn close(&mut self, ip: IpAddr) {
        if let Some(count) = self.open.get_mut(&ip) {
            *count -= 1;
            self.open_total -= 1;
            if *count == 0 {
                self.open.remove(&ip);
            }
        }
    }

    pub fn open_total(&self) -> usize {
        self.open_total
    }

    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.open.get(&ip).copied().unwrap_or(0)
    }
}

/// [`ConnectionCaps`] shared by a driver's tasks; slots are RAII guards.
#[derive(Debug, Clone, Default)]
pub struct SharedCaps(Arc<Mutex<ConnectionCaps>>);

/// A connection slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct ConnectionSlot {
    caps: SharedCaps,
    ip: IpAddr,
}

impl SharedCaps {
    pub fn new(caps: ConnectionCaps) -> SharedCaps {
        SharedCaps(Arc::new(Mutex::new(caps)))
    }

    pub fn try_open(&self, ip: IpAddr) -> Result<ConnectionSlot, CapRefusal> {
        self.lock().try_open(ip)?;
        Ok(ConnectionSlot { caps: self.clone(), ip })
    }

    /// A snapshot of the counts.
    pub fn snapshot(&self) -> ConnectionCaps {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnectionCaps> {
        // The counts stay consistent even if a holder panicked mid-way
        // (every update is a single step), so poison is ignored.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.caps.lock().close(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn sixth_wrong_attempt_in_a_minute_is_refused_before_any_pake() {
        let t0 = Instant::now();
        let mut limiter = AttemptLimiter::default();
        let attacker = ip("10.0.0.66");
        for i in 0..5 {
            let ticket = limiter.begin(attacker, t0 + Duration::from_secs(i)).unwrap();
            limiter.failed(ticket);
        }
        let refused = limiter.begin(attacker, t0 + Duration::from_secs(10));
        assert_eq!(refused, Err(Refusal::TooManyAttempts { retry_after: Duration::from_secs(50) }));
        // Another port on the same machine is the same source.
        assert!(limiter.begin(attacker, t0 + Duration::from_secs(59)).is_err());
        // Others are not affected.
        let ticket = limiter.begin(ip("10.0.0.7"), t0 + Duration::from_secs(10)).unwrap();
        limiter.succeeded(ticket);
        // One window after the first failure, exactly one slot is free again.
        let ticket = limiter.begin(attacker, t0 + Duration::from_secs(60)).unwrap();
        limiter.failed(ticket);
        assert!(matches!(
            limiter.begin(attacker, t0 + Duration::from_secs(60)),
            Err(Refusal::TooManyAttempts { .. })
        ));
        assert!(limiter.begin(attacker, t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn successes_give_their_slot_back() {
        let t0 = Instant::now();
        let mut limiter = AttemptLimiter::default();
        let user = ip("192.168.1.5");
        for i in 0..100 {
            let ticket = limiter.begin(user, t0 + Duration::from_millis(i)).unwrap();
            limiter.succeeded(ticket);
        }
        assert_eq!(limiter.tracked_sources(), 0);
        // Four typos, then the right passcode, then another typo: still fine.
        for _ in 0..4 {
            let ticket = limiter.begin(user, t0).unwrap();
            limiter.failed(ticket);
        }
        let ticket = limiter.begin(user, t0).unwrap();
        limiter.succeeded(ticket);
        let ticket = limiter.begin(user, t0).unwrap();
        limiter.failed(ticket);
        assert!(limiter.begin(user, t0).is_err());
    }

    #[test]
    fn checks_in_progress_hold_slots_and_answer_busy() {
        let t0 = Instant::now();
        let mut limiter = AttemptLimiter::default();
        let source = ip("10.1.1.1");
        // Five guesses in parallel: a sixth cannot start, whatever their
        // outcome will be.
        let tickets: Vec<_> = (0..5).map(|_| limiter.begin(source, t0).unwrap()).collect();
        assert_eq!(limiter.begin(source, t0), Err(Refusal::Busy));
        let mut tickets = tickets.into_iter();
        limiter.succeeded(tickets.next().unwrap());
        let sixth = limiter.begin(source, t0).unwrap();
        limiter.failed(sixth);
        for ticket in tickets {
            limiter.failed(ticket);
        }
        assert!(matches!(limiter.begin(source, t0), Err(Refusal::TooManyAttempts { .. })));
    }

    #[test]
    fn a_dropped_ticket_counts_as_a_failure_until_the_window_passes() {
        let t0 = Instant::now();
        let mut limiter = AttemptLimiter::new(1, ATTEMPT_WINDOW);
        let source = ip("10.1.1.1");
        drop(limiter.begin(source, t0).unwrap());
        assert!(limiter.begin(source, t0 + Duration::from_secs(59)).is_err());
        assert!(limiter.begin(source, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn ipv6_sources_are_keyed_by_their_64_prefix() {
        assert_eq!(source_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        let t0 = Instant::now();
        let mut limiter = AttemptLimiter::default();
        for i in 0..5 {
            let ticket = limiter.begin(ip(&format!("2001:db8::{i}")), t0).unwrap();
            limiter.failed(ticket);
        }
        assert!(limiter.begin(ip("2001:db8::ffff"), t0).is_err());
        assert!(limiter.begin(ip("2001:db8:0:1::1"), t0).is_ok());
    }

    #[test]
    fn prune_forgets_old_sources() {
        let t0 = Instant::now();
        let mut limiter = AttemptLimiter::default();
        for i in 0..10u8 {
            let ticket = limiter.begin(IpAddr::from([10, 0, 0, i]), t0).unwrap();
            limiter.failed(ticket);
        }
        assert_eq!(limiter.tracked_sources(), 10);
        limiter.prune(t0 + Duration::from_secs(59));
        assert_eq!(limiter.tracked_sources(), 10);
        limiter.prune(t0 + ATTEMPT_WINDOW);
        assert_eq!(limiter.tracked_sources(), 0);
    }

    #[test]
    fn connection_caps_per_address_and_total() {
        let mut caps = ConnectionCaps::new(2, 3);
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        assert_eq!(caps.try_open(a), Ok(()));
        assert_eq!(caps.try_open(a), Ok(()));
        assert_eq!(caps.try_open(a), Err(CapRefusal::PerAddress { limit: 2 }));
        assert_eq!(caps.try_open(b), Ok(()));
        assert_eq!(caps.try_open(b), Err(CapRefusal::Total { limit: 3 }));
        caps.close(a);
        assert_eq!(caps.try_open(b), Ok(()));
        assert_eq!((caps.open_from(a), caps.open_from(b), caps.open_total()), (1, 2, 3));
        // Closing an address that holds nothing changes nothing.
        caps.close(ip("10.9.9.9"));
        assert_eq!(caps.open_total(), 3);
    }

    #[test]
    fn shared_slots_are_given_back_on_drop() {
        let caps = SharedCaps::new(ConnectionCaps::new(1, 10));
        let a = ip("10.0.0.1");
        let slot = caps.try_open(a).unwrap();
        assert!(caps.try_open(a).is_err());
        drop(slot);
        assert!(caps.try_open(a).is_ok());
        assert_eq!(caps.snapshot().open_total(), 0);
    }
}
