//! Xen's per-vCPU timers (`common/sched/core.c`, `common/domain.c`): the
//! singleshot timer (`set_timer_op`, `VCPUOP_set_singleshot_timer`) and the
//! periodic timer (`VCPUOP_set_periodic_timer`), both raising `VIRQ_TIMER`
//! on their vCPU.
//!
//! Deadlines are in guest system time (the pvclock's nanoseconds); they are
//! turned into host `Instant`s when armed. One thread per domain (started
//! on the first arm) sleeps until the earliest deadline and fires through
//! a `Weak<Domain>`, so the timers never keep a domain alive.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::Domain;

/// One vCPU's timers.
#[derive(Debug, Clone, Copy, Default)]
struct VcpuTimers {
    singleshot: Option<Instant>,
    /// (period, next expiry).
    periodic: Option<(Duration, Instant)>,
}

#[derive(Debug, Default)]
struct Inner {
    vcpus: Vec<VcpuTimers>,
    thread_started: bool,
    shutdown: bool,
}

/// The timers of one domain.
#[derive(Debug)]
pub(crate) struct Timers {
    inner: Mutex<Inner>,
    cv: Condvar,
}

impl Timers {
    pub fn new(vcpus: u32) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                vcpus: vec![VcpuTimers::default(); vcpus as usize],
                ..Inner::default()
            }),
            cv: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arms (or with `None` stops) `vcpu`'s singleshot timer.
    pub fn set_singleshot(self: &Arc<Self>, d: &Weak<Domain>, vcpu: u32, at: Option<Instant>) {
        let mut g = self.lock();
        if let Some(t) = g.vcpus.get_mut(vcpu as usize) {
            t.singleshot = at;
        }
        self.changed(g, d);
    }

    /// Starts (period > 0) or stops `vcpu`'s periodic timer. The first
    /// tick is one period from now (Xen's `vcpu_set_periodic_timer`).
    pub fn set_periodic(self: &Arc<Self>, d: &Weak<Domain>, vcpu: u32, period: Option<Duration>) {
        let mut g = self.lock();
        if let Some(t) = g.vcpus.get_mut(vcpu as usize) {
            t.periodic = period.map(|p| (p, Instant::now() + p));
        }
        self.changed(g, d);
    }

    /// Stops every timer of `vcpu` (it went down).
    pub fn stop_all(self: &Arc<Self>, d: &Weak<Domain>, vcpu: u32) {
        let mut g = self.lock();
        if let Some(t) = g.vcpus.get_mut(vcpu as usize) {
            *t = VcpuTimers::default();
        }
        self.changed(g, d);
    }

    /// When `vcpu`'s singleshot timer fires, if armed.
    pub fn singleshot(&self, vcpu: u32) -> Option<Instant> {
        self.lock()
            .vcpus
            .get(vcpu as usize)
            .and_then(|t| t.singleshot)
    }

    /// `vcpu`'s periodic timer period, if running.
    pub fn period(&self, vcpu: u32) -> Option<Duration> {
        self.lock()
            .vcpus
            .get(vcpu as usize)
            .and_then(|t| t.periodic.map(|p| p.0))
    }

    /// Ends the timer thread (the domain is going away).
    pub fn shutdown(&self) {
        self.lock().shutdown = true;
        self.cv.notify_all();
    }

    fn changed(self: &Arc<Self>, mut g: std::sync::MutexGuard<'_, Inner>, d: &Weak<Domain>) {
        if !g.thread_started
            && g.vcpus
                .iter()
                .any(|t| t.singleshot.is_some() || t.periodic.is_some())
        {
            let me = self.clone();
            let d = d.clone();
            let spawned = std::thread::Builder::new()
                .name("xen-timers".into())
                .spawn(move || me.run(d));
            match spawned {
                Ok(_) => g.thread_started = true,
                Err(e) => tracing::error!("cannot start the Xen timer thread: {e}"),
            }
        }
        drop(g);
        self.cv.notify_all();
    }

    /// The timer thread: fire what is due, sleep until the next deadline.
    fn run(self: Arc<Self>, d: Weak<Domain>) {
        let mut g = self.lock();
        loop {
            if g.shutdown {
                return;
            }
            let now = Instant::now();
            let mut due = Vec::new();
            let mut next: Option<Instant> = None;
            for (i, t) in g.vcpus.iter_mut().enumerate() {
                if let Some(at) = t.singleshot {
                    if at <= now {
                        t.singleshot = None;
                        due.push(i as u32);
                    } else {
                        next = Some(next.map_or(at, |n| n.min(at)));
                    }
                }
                if let Some((p, at)) = t.periodic {
                    let at = if at <= now {
                        due.push(i as u32);
                        // Xen re-arms from the time of this tick; missed
                        // ticks are not replayed.
                        let n = now + p;
                        t.periodic = Some((p, n));
                        n
                    } else {
                        at
                    };
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
            if !due.is_empty() {
                drop(g);
                match d.upgrade() {
                    Some(dom) => {
                        for v in due {
                            dom.timer_fired(v);
                        }
                    }
                    None => return,
                }
                g = self.lock();
                continue;
            }
            g = match next {
                None => self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    self.cv
                        .wait_timeout(g, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            if d.strong_count() == 0 {
                return;
            }
        }
    }
}

/// Xen's `set_timer_op` "Linux workaround": deadlines more than 2^50 ns
/// (about 13 days) ahead, or negative, fire after 100 ms instead.
const HUGE_TIMEOUT_FALLBACK: Duration = Duration::from_millis(100);

impl Domain {
    /// Arms `vcpu`'s singleshot timer for guest system time `deadline_ns`
    /// (`now_ns` being the current one); a past deadline fires at once.
    pub(crate) fn arm_singleshot(&self, vcpu: u32, deadline_ns: u64, now_ns: u64) {
        let delta = deadline_ns.saturating_sub(now_ns);
        let at = Instant::now() + Duration::from_nanos(delta);
        self.timers.set_singleshot(&self.me, vcpu, Some(at));
    }

    /// `HYPERVISOR_set_timer_op(timeout)` by `vcpu`.
    pub(crate) fn set_timer_op(&self, vcpu: u32, timeout: i64) {
        if timeout == 0 {
            self.timers.set_singleshot(&self.me, vcpu, None);
            return;
        }
        let now = self.platform.system_time_ns() as i64;
        let offset = timeout.wrapping_sub(now);
        if timeout < 0 || (offset > 0 && (offset >> 50) as u32 != 0) {
            tracing::debug!("vCPU {vcpu}: huge timeout {timeout:#x}: firing in 100 ms");
            self.timers.set_singleshot(
                &self.me,
                vcpu,
                Some(Instant::now() + HUGE_TIMEOUT_FALLBACK),
            );
            return;
        }
        self.arm_singleshot(vcpu, timeout as u64, now as u64);
    }

    /// A timer of `vcpu` expired: `send_timer_event` raises `VIRQ_TIMER`.
    pub(crate) fn timer_fired(&self, vcpu: u32) {
        self.update_time_area(vcpu);
        self.raise_virq(vcpu, xen_abi::xen::VIRQ_TIMER);
        // Even with VIRQ_TIMER unbound, a blocked vCPU wakes (vcpu_unblock).
        self.event_for_vcpu(vcpu);
    }

    /// When `vcpu`'s singleshot timer is due, if armed (for the VMM and
    /// tests).
    pub fn singleshot_deadline(&self, vcpu: u32) -> Option<Instant> {
        self.timers.singleshot(vcpu)
    }

    /// `vcpu`'s periodic timer period, if running.
    pub fn periodic_period(&self, vcpu: u32) -> Option<Duration> {
        self.timers.period(vcpu)
    }
}
