//! The `uring` executor's deadlines: every connection's current deadline (header, idle, body,
//! write, linger, and an `/io` wait) kept in one ordered set, whose earliest entry becomes the
//! timeout of the loop's one `io_uring_enter`. No timer object per connection, no timer
//! operation per request.
//!
//! Entries are lazy: a connection's entry may be earlier than its deadline, never later. A
//! deadline that moves later (the idle deadline after each keep-alive answer, the write deadline
//! of the next reply) leaves the set alone; when the early entry comes due, the loop finds the
//! real deadline still ahead and files it again. So a keep-alive connection touches the set about
//! once per write timeout, not once per request, and holds at most one entry at any time.
use std::collections::BTreeSet;
use std::time::Instant;

#[derive(Debug, Default)]
pub struct Deadlines {
    set: BTreeSet<(Instant, u32)>,
}

impl Deadlines {
    /// Makes sure slot `slot` is looked at by `at`. `armed` is the slot's entry in the set.
    pub fn set(&mut self, slot: u32, armed: &mut Option<Instant>, at: Instant) {
        if let Some(a) = *armed {
            if a <= at {
                return;
            }
            self.set.remove(&(a, slot));
        }
        self.set.insert((at, slot));
        *armed = Some(at);
    }

    /// Removes slot `slot`'s entry (the slot is freed).
    pub fn clear(&mut self, slot: u32, armed: &mut Option<Instant>) {
        if let Some(a) = armed.take() {
            self.set.remove(&(a, slot));
        }
    }

    /// The earliest entry.
    pub fn next(&self) -> Option<Instant> {
        self.set.first().map(|&(at, _)| at)
    }

    /// Takes an entry due at `now`, if any; the caller sets the slot's `armed` to None and
    /// compares its real deadline with `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<u32> {
        match self.set.first() {
            Some(&(at, _)) if at <= now => self.set.pop_first().map(|(_, slot)| slot),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_later_deadline_leaves_the_set_alone_and_an_earlier_one_replaces_the_entry() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        let mut armed = None;
        d.set(7, &mut armed, t0 + 30 * S);
        // The next keep-alive answers push the deadline later: nothing changes.
        d.set(7, &mut armed, t0 + 75 * S);
        d.set(7, &mut armed, t0 + 76 * S);
        assert_eq!((d.len(), armed), (1, Some(t0 + 30 * S)));
        // A shorter one (a header deadline) must be seen in time: the entry moves.
        d.set(7, &mut armed, t0 + 10 * S);
        assert_eq!((d.len(), d.next()), (1, Some(t0 + 10 * S)));
        d.clear(7, &mut armed);
        assert!(d.is_empty() && armed.is_none());
    }

    #[test]
    fn due_entries_come_out_in_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        let (mut a, mut b, mut c) = (None, None, None);
        d.set(1, &mut a, t0 + 3 * S);
        d.set(2, &mut b, t0 + S);
        d.set(3, &mut c, t0 + 2 * S);
        assert_eq!(d.pop_due(t0), None);
        assert_eq!(d.pop_due(t0 + 2 * S), Some(2));
        assert_eq!(d.pop_due(t0 + 2 * S), Some(3));
        assert_eq!(d.pop_due(t0 + 2 * S), None);
        assert_eq!(d.next(), Some(t0 + 3 * S));
    }

    #[test]
    fn equal_instants_of_different_slots_are_both_kept() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        let (mut a, mut b) = (None, None);
        d.set(1, &mut a, t0);
        d.set(2, &mut b, t0);
        assert_eq!(d.len(), 2);
    }
}
