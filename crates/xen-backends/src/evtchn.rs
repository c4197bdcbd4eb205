//! The backend's end of interdomain event channels, implemented by the VMM
//! over `xen_emu::Domain`'s backend API.

use std::sync::Arc;

/// Called when the frontend notifies the port. It runs on the guest's vCPU
/// thread inside `EVTCHNOP_send`, so it must only wake a backend thread.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// Binding and signalling ports the frontend allocated for the backend.
pub trait EventChannels: Send + Sync {
    /// Binds guest port `port` (the frontend's `event-channel` key, from
    /// `EVTCHNOP_alloc_unbound` for the backend domain).
    fn bind(&self, port: u32, on_notify: Notify) -> Result<(), String>;
    /// Signals the frontend on `port`.
    fn notify(&self, port: u32);
    /// Drops the backend's binding (the guest's port stays; a later bind
    /// of a new port replaces it).
    fn unbind(&self, _port: u32) {}
}
