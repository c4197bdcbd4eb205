//! Blocking a vCPU thread inside `SCHEDOP_block` / `SCHEDOP_poll` until it
//! is woken (an event for it, [`crate::Domain::wake_vcpu`]) or a deadline.
//!
//! A wake that arrives while the vCPU is not parked is remembered, so the
//! check-then-sleep race cannot lose it.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// One vCPU's parking spot.
#[derive(Debug, Default)]
pub struct Parker {
    woken: Mutex<bool>,
    cv: Condvar,
}

/// Why [`Parker::park`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// `ready()` was true.
    Ready,
    /// Someone called [`Parker::wake`].
    Woken,
    /// The deadline passed.
    Timeout,
}

impl Parker {
    /// Wakes the parked thread (or the next `park`).
    pub fn wake(&self) {
        let mut w = self.woken.lock().unwrap_or_else(|e| e.into_inner());
        *w = true;
        self.cv.notify_all();
    }

    /// Forgets a wake-up that arrived before the caller started to block
    /// (a stale event must not end a new `SCHEDOP_block` at once). Events
    /// after this call still wake the next [`Self::park`].
    pub fn clear(&self) {
        *self.woken.lock().unwrap_or_else(|e| e.into_inner()) = false;
    }

    /// Sleeps until `ready()` holds, a wake arrives or `deadline` passes.
    /// `ready` is evaluated under the parker's lock, so a waker that makes
    /// it true and then calls [`Self::wake`] is never missed.
    pub fn park(&self, deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> Wake {
        let mut w = self.woken.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if ready() {
                *w = false;
                return Wake::Ready;
            }
            if *w {
                *w = false;
                return Wake::Woken;
            }
            match deadline {
                None => w = self.cv.wait(w).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Wake::Timeout;
                    }
                    let left = (d - now).min(Duration::from_secs(3600));
                    w = self
                        .cv
                        .wait_timeout(w, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}
