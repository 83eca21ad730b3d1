//! Member slots (`--max-clients`): a counting limit that, unlike a semaphore, can be lowered or
//! raised while members hold slots (a config reload): lowering refuses newcomers until enough
//! members have left, and never disconnects anyone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How many members may be seated at once, and how many are.
#[derive(Debug)]
pub struct Slots {
    used: AtomicUsize,
    max: AtomicUsize,
}

/// One taken slot, given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Slots>);

impl Slots {
    /// Room for `max` members.
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            used: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
        })
    }

    /// Takes a slot if fewer than the maximum are taken.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let max = self.max.load(Ordering::Acquire);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }

    /// Changes the maximum; slots already taken stay taken.
    pub fn resize(&self, max: usize) {
        self.max.store(max, Ordering::Release);
    }

    /// Slots taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_given_back_and_resizable() {
        let slots = Slots::new(2);
        let a = slots.try_take().expect("first");
        let b = slots.try_take().expect("second");
        assert!(slots.try_take().is_none());
        drop(a);
        let c = slots.try_take().expect("freed");
        slots.resize(1);
        assert!(slots.try_take().is_none(), "lowered: nobody new");
        assert_eq!(slots.used(), 2, "nobody was thrown out");
        drop((b, c));
        let _d = slots.try_take().expect("below the new maximum");
        assert!(slots.try_take().is_none());
        slots.resize(3);
        assert!(slots.try_take().is_some());
    }
}
