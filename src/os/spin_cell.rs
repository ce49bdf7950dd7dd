//! A value behind a one-word lock that costs one compare-and-swap to take and one store to
//! give back: for state touched by a few dozen instructions per call on a hot path (the node
//! store's allocation lane), where a mutex's unlock, a second read-modify-write, would cost as
//! much as the work. Waiters spin (the holder never blocks while holding it).

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) struct SpinCell<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and one guard exists at a time (`busy`),
// so the cell hands `T` to one thread at a time as a `Mutex<T>` does: `T: Send` is enough.
unsafe impl<T: Send> Sync for SpinCell<T> {}
// SAFETY: as above; moving the cell moves the value.
unsafe impl<T: Send> Send for SpinCell<T> {}

pub(crate) struct SpinGuard<'a, T> {
    cell: &'a SpinCell<T>,
}

impl<T> SpinCell<T> {
    pub(crate) const fn new(value: T) -> SpinCell<T> {
        SpinCell { busy: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    /// The value, unless another thread holds it now.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        self.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).ok()?;
        Some(SpinGuard { cell: self })
    }

    /// The value, waiting for its holder (who holds it for a bounded, short time).
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        let mut spins = 0u32;
        loop {
            if let Some(g) = self.try_lock() {
                return g;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now(); // the holder may be descheduled on a loaded machine
            }
        }
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard is the one holder (`busy` was set by its `try_lock`).
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through the guard.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.cell.busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn one_holder_at_a_time_and_every_update_counts() {
        let cell = Arc::new(SpinCell::new(0u64));
        let g = cell.try_lock().unwrap();
        assert!(cell.try_lock().is_none(), "held");
        drop(g);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cell = cell.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *cell.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*cell.lock(), 40_000);
    }
}
