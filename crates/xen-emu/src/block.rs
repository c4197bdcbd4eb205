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
    woken: Mutex<Flags>,
    cv: Condvar,
}

/// Under the parker's lock: an explicit wake-up (remembered until the next
/// park consumes it) and a count of event notifications (only events
/// after a block started count for it).
#[derive(Debug, Default)]
struct Flags {
    woken: bool,
    events: u64,
    /// Threads inside `cv.wait*`. A notifier holding the lock sees every
    /// sleeper (a sleeper counts itself before `wait` releases the lock),
    /// so with none it can skip `notify_all`, whose futex syscall is most
    /// of an `EVTCHNOP_send`'s host cost.
    sleepers: u32,
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
        w.woken = true;
        if w.sleepers != 0 {
            self.cv.notify_all();
        }
    }

    /// An event arrived for the vCPU: wakes a park that started after
    /// [`Self::events`] returned an older count.
    pub fn notify_event(&self) {
        let mut w = self.woken.lock().unwrap_or_else(|e| e.into_inner());
        w.events = w.events.wrapping_add(1);
        if w.sleepers != 0 {
            self.cv.notify_all();
        }
    }

    /// The event count now (taken when a block starts).
    pub fn events(&self) -> u64 {
        self.woken.lock().unwrap_or_else(|e| e.into_inner()).events
    }

    /// Sleeps until `ready()` holds, a wake arrives or `deadline` passes.
    /// `ready` is evaluated under the parker's lock, so a waker that makes
    /// it true and then calls [`Self::wake`] is never missed.
    /// `since`: an event count from [`Self::events`]; any event after it
    /// ends the park too.
    pub fn park(
        &self,
        deadline: Option<Instant>,
        since: Option<u64>,
        mut ready: impl FnMut() -> bool,
    ) -> Wake {
        let mut w = self.woken.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if ready() {
                w.woken = false;
                return Wake::Ready;
            }
            if w.woken || since.is_some_and(|s| s != w.events) {
                w.woken = false;
                return Wake::Woken;
            }
            match deadline {
                None => {
                    w.sleepers += 1;
                    w = self.cv.wait(w).unwrap_or_else(|e| e.into_inner());
                    w.sleepers -= 1;
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Wake::Timeout;
                    }
                    let left = (d - now).min(Duration::from_secs(3600));
                    w.sleepers += 1;
                    w = self
                        .cv
                        .wait_timeout(w, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    w.sleepers -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Notifiers skip the futex wake when nobody sleeps; a sleeper must
    /// still be woken, with and without a deadline, and a wake with no
    /// sleeper must still be remembered.
    #[test]
    fn wakes_reach_sleepers_and_are_remembered_without_one() {
        let p = Parker::default();
        p.wake();
        assert_eq!(p.park(None, None, || false), Wake::Woken);

        for deadline in [None, Some(Instant::now() + Duration::from_secs(60))] {
            let p = Arc::new(Parker::default());
            let since = p.events();
            let sleeper = {
                let p = p.clone();
                std::thread::spawn(move || p.park(deadline, Some(since), || false))
            };
            // Let it get to sleep (it is correct either way).
            while p.woken.lock().map(|w| w.sleepers).unwrap_or(1) == 0 && !sleeper.is_finished() {
                std::thread::yield_now();
            }
            let woke = Instant::now();
            p.notify_event();
            assert_eq!(sleeper.join().ok(), Some(Wake::Woken));
            // Woken by the notification, not by the deadline.
            assert!(woke.elapsed() < Duration::from_secs(30));
        }
    }
}
