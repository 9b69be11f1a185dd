//! Locks that ignore poison. A panic in the plugin's code is caught
//! (`crate::contain`) and its element stops; what it was changing under a
//! lock may be left half-updated, but from then on is read only for
//! statistics, properties and the cleanup. A poisoned lock that panicked
//! again would turn one panic into two, in a GLib callback (a property's
//! read, a signal) a process abort, and would hide the last values the
//! properties show; so every lock outside the tests is taken as it is.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// A mutex's guard, poisoned or not.
pub(crate) trait Locked<T: ?Sized> {
    /// As `lock()`, but a lock poisoned by a panic is taken all the same.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for Mutex<T> {
    #[inline]
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_gives_its_last_value() {
        let mutex = Mutex::new(1);
        let _ = std::panic::catch_unwind(|| {
            let mut guard = mutex.lock().unwrap();
            *guard = 2;
            panic!("poisons (test)");
        });
        assert!(mutex.is_poisoned());
        assert_eq!(*mutex.locked(), 2);
    }
}
