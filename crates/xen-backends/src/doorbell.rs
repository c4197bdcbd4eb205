//! A wake-up that is not lost: `ring` before `wait` still ends the next
//! wait at once. The ring threads of the backends sleep on it between
//! guest notifications, with a timeout as a safety net.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
pub(crate) struct Doorbell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Doorbell {
    /// Wakes every thread waiting (or about to wait) on the bell.
    pub(crate) fn ring(&self) {
        *self.rung.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Sleeps until rung or for `t`, whichever is first, and re-arms.
    pub(crate) fn wait(&self, t: Duration) {
        let mut r = self.rung.lock().unwrap_or_else(|e| e.into_inner());
        if !*r {
            r = self
                .cv
                .wait_timeout(r, t)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *r = false;
    }
}
