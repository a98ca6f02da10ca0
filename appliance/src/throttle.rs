//! Login throttling, pure (time passed in): failed logins counted per client address (a source
//! that fails too often waits, whichever names it tries) and per login name whether or not the
//! account exists, so an unknown name is locked after as many failures as a real one and the
//! answers never tell which names exist. The database keeps real accounts' lockouts across
//! restarts; this keeps the rest in memory, bounded.

use std::collections::HashMap;

/// Failures from one address within [`ADDRESS_WINDOW_MS`] before it must wait.
pub const ADDRESS_FAILURES: u32 = 20;
/// The window and the wait for an address, milliseconds.
pub const ADDRESS_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Entries kept per map; beyond it the stalest go.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy, Default)]
struct Count {
    since: i64,
    failures: u32,
    blocked_until: i64,
}

/// What the throttle says before a login is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// The address failed too often: wait this many seconds.
    Address {
        /// Seconds to wait.
        retry_secs: i64,
    },
    /// The name failed too often: locked for this many minutes.
    Name {
        /// Minutes left.
        minutes: i64,
    },
}

/// The counters.
#[derive(Debug, Default)]
pub struct Throttle {
    addresses: HashMap<String, Count>,
    names: HashMap<String, Count>,
}

impl Throttle {
    /// Whether `address` may try `name` at `now` (ms).
    pub fn check(&self, address: &str, name: &str, now: i64) -> Verdict {
        if let Some(c) = self.addresses.get(address)
            && c.blocked_until > now
        {
            return Verdict::Address {
                retry_secs: (c.blocked_until - now + 999) / 1000,
            };
        }
        if let Some(c) = self.names.get(&key(name))
            && c.blocked_until > now
        {
            return Verdict::Name {
                minutes: (c.blocked_until - now + 59_999) / 60_000,
            };
        }
        Verdict::Allow
    }

    /// Counts a failure; the name locks after `threshold` failures for `lock_ms`, as the
    /// account policy locks real accounts.
    pub fn failed(&mut self, address: &str, name: &str, now: i64, threshold: i64, lock_ms: i64) {
        bump(
            &mut self.addresses,
            address.to_owned(),
            now,
            ADDRESS_WINDOW_MS,
            i64::from(ADDRESS_FAILURES),
            ADDRESS_WINDOW_MS,
        );
        bump(&mut self.names, key(name), now, lock_ms, threshold, lock_ms);
    }

    /// A login succeeded: the name's count starts again (the address's does not: one good
    /// password does not excuse a spray).
    pub fn succeeded(&mut self, name: &str) {
        self.clear(name);
    }

    /// Forgets the name's failures (an administrator unlocked the account).
    pub fn clear(&mut self, name: &str) {
        self.names.remove(&key(name));
    }
}

fn key(name: &str) -> String {
    name.trim().to_lowercase()
}

fn bump(
    map: &mut HashMap<String, Count>,
    k: String,
    now: i64,
    window: i64,
    threshold: i64,
    block: i64,
) {
    if map.len() >= MAX_ENTRIES && !map.contains_key(&k) {
        // Forget what has expired; if everything is live, the oldest window goes.
        map.retain(|_, c| c.blocked_until > now || now - c.since < window);
        if map.len() >= MAX_ENTRIES
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, c)| c.since)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    let c = map.entry(k).or_default();
    if now - c.since >= window {
        *c = Count {
            since: now,
            ..Count::default()
        };
    }
    c.failures += 1;
    if i64::from(c.failures) >= threshold.max(1) {
        c.blocked_until = now + block;
        c.failures = 0;
        c.since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lock_like_accounts_and_addresses_wait() {
        let mut t = Throttle::default();
        let min = 60_000;
        for i in 0..4 {
            t.failed("10.0.0.1", "Nobody", i, 5, 15 * min);
            assert_eq!(t.check("10.0.0.1", "nobody", i), Verdict::Allow);
        }
        t.failed("10.0.0.1", "nobody ", 4, 5, 15 * min);
        assert_eq!(
            t.check("10.0.0.2", "NOBODY", 5),
            Verdict::Name { minutes: 15 }
        );
        assert_eq!(t.check("10.0.0.2", "nobody", 15 * min + 4), Verdict::Allow);
        // An address spraying many names waits, whatever name it tries next.
        for i in 0..ADDRESS_FAILURES {
            t.failed("10.0.0.9", &format!("user{i}"), 100, 5, 15 * min);
        }
        assert_eq!(
            t.check("10.0.0.9", "fresh", 100),
            Verdict::Address { retry_secs: 600 }
        );
        assert_eq!(t.check("10.0.0.8", "fresh", 100), Verdict::Allow);
        // Failures spread beyond the window do not add up.
        let mut t = Throttle::default();
        for i in 0..10 {
            t.failed("a", "b", i * 20 * min, 5, 15 * min);
        }
        assert_eq!(t.check("a", "b", 200 * min), Verdict::Allow);
        t.succeeded("b");
    }

    #[test]
    fn memory_stays_bounded() {
        let mut t = Throttle::default();
        for i in 0..(MAX_ENTRIES + 50) {
            t.failed(&format!("a{i}"), &format!("n{i}"), 1, 5, 1000);
        }
        assert!(t.addresses.len() <= MAX_ENTRIES && t.names.len() <= MAX_ENTRIES);
    }
}
