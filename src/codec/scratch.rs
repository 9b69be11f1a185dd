//! Work buffers shared by every call on a thread.
//!
//! A chunk's audio passes through several buffers on its way (decoded,
//! filter windows, resampled). Held per call, each is cold by the time the
//! call's next chunk comes, 20 ms and a few hundred other calls later, and
//! every pass through it misses the cache. Taken from the thread's pool
//! instead, they are the same few buffers for every chunk on the thread, so
//! they stay in cache; a call keeps only what must outlive the chunk (a
//! filter's last samples). A [`Scratch`] goes back to the pool when dropped.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

/// Buffers a thread keeps for reuse, per sample type; more than the
/// deepest nesting of them (the 48 kHz downsampler: about six).
const KEPT: usize = 16;
/// Larger buffers (samples) are freed, not kept: an odd, long buffer (a
/// whole sentence pushed at once) would otherwise stay with the thread.
/// A 20 ms chunk at 48 kHz is 960 samples.
const KEPT_CAPACITY: usize = 16384;

thread_local! {
    static F32: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static I16: RefCell<Vec<Vec<i16>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer from this thread's pool, returned to it when dropped.
pub struct Scratch<T: 'static> {
    buf: Vec<T>,
    pool: &'static LocalKey<RefCell<Vec<Vec<T>>>>,
}

impl<T: 'static> Scratch<T> {
    fn take(pool: &'static LocalKey<RefCell<Vec<Vec<T>>>>) -> Self {
        // After the thread's pool is gone (its exit), a new buffer.
        let buf = pool
            .try_with(|p| p.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        Scratch { buf, pool }
    }
}

/// An empty f32 buffer from this thread's pool.
pub fn f32s() -> Scratch<f32> {
    Scratch::take(&F32)
}

/// An empty i16 buffer from this thread's pool.
pub fn i16s() -> Scratch<i16> {
    Scratch::take(&I16)
}

impl<T: 'static> Drop for Scratch<T> {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() > KEPT_CAPACITY {
            return;
        }
        buf.clear();
        let _ = self.pool.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEPT {
                p.push(buf);
            }
        });
    }
}

impl<T: 'static> Deref for Scratch<T> {
    type Target = Vec<T>;

    fn deref(&self) -> &Vec<T> {
        &self.buf
    }
}

impl<T: 'static> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_the_next_one_taken_and_comes_back_empty() {
        let mut a = f32s();
        a.extend_from_slice(&[1.0; 100]);
        let ptr = a.as_ptr();
        drop(a);
        let b = f32s();
        assert!(b.is_empty());
        assert_eq!(b.as_ptr(), ptr, "the same allocation, reused");
        // Two at once are two buffers.
        let mut c = f32s();
        c.push(2.0);
        assert_ne!(b.as_ptr(), c.as_ptr());
    }

    #[test]
    fn a_very_large_buffer_is_not_kept() {
        let mut big = f32s();
        big.resize(KEPT_CAPACITY + 1, 0.0);
        let ptr = big.as_ptr();
        drop(big);
        let next = f32s();
        assert_ne!(next.as_ptr(), ptr);
        assert!(next.capacity() <= KEPT_CAPACITY);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_buffers() {
        let many: Vec<_> = (0..2 * KEPT)
            .map(|_| {
                let mut s = i16s();
                s.push(1);
                s
            })
            .collect();
        drop(many);
        assert_eq!(I16.with(|p| p.borrow().len()), KEPT);
    }
}
