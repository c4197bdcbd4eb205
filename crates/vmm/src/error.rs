//! The VMM's errors: each message says what failed and, where a user can act,
//! what to change.

use std::path::PathBuf;

/// Why building or running a domain failed (never a guest-initiated shutdown:
/// those are [`crate::DomainExit`]).
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// `/dev/kvm` could not be opened or lacks something we need.
    #[error("KVM: {what}: {source}")]
    Kvm {
        what: &'static str,
        #[source]
        source: vmm_sys_util::errno::Error,
    },
    /// The host KVM lacks a capability the VMM cannot do without.
    #[error("KVM lacks {0}; xkvm needs it")]
    MissingCapability(&'static str),
    /// The configuration cannot be built (bad sizes, too many vCPUs, ...).
    #[error("invalid domain configuration: {0}")]
    Config(String),
    /// Reading a kernel or module file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The kernel image is not something we can boot as a PVH guest.
    #[error("{path}: {reason}")]
    Kernel { path: PathBuf, reason: String },
    /// Guest memory could not be allocated or was accessed out of range while
    /// building the domain.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The boot images do not fit in the guest's memory.
    #[error("guest memory too small: {0}; raise `memory`")]
    NoRoom(String),
    /// KVM reported an exit the VMM does not expect from this guest.
    #[error("vCPU {vcpu}: unexpected KVM exit: {reason}")]
    UnexpectedExit { vcpu: u32, reason: String },
    /// KVM could not emulate a guest instruction (`KVM_EXIT_INTERNAL_ERROR`).
    #[error("vCPU {vcpu}: KVM internal error (suberror {suberror}, data {data:x?}), rip {rip:#x}")]
    InternalError {
        vcpu: u32,
        suberror: u32,
        data: Vec<u64>,
        rip: u64,
    },
    /// VM entry failed (`KVM_EXIT_FAIL_ENTRY`).
    #[error("vCPU {vcpu}: VM entry failed, hardware reason {reason:#x}")]
    FailEntry { vcpu: u32, reason: u64 },
    /// A vCPU thread panicked or could not be started.
    #[error("vCPU thread: {0}")]
    Thread(String),
    /// Console input/output failed.
    #[error("console: {0}")]
    Console(#[source] std::io::Error),
}

impl VmmError {
    pub(crate) fn kvm(what: &'static str) -> impl FnOnce(vmm_sys_util::errno::Error) -> Self {
        move |source| VmmError::Kvm { what, source }
    }
}
