//! HVM parameters (`HVMOP_{get,set}_param`) with Xen's access rules
//! (`hvm_allow_get_param` / `hvm_allow_set_param`): which indices the guest
//! itself may read or write, and which the toolstack (the VMM) presets.

use xen_abi::hvm::params::*;

use crate::types::Errno;

/// The parameter array of one domain.
#[derive(Debug, Clone)]
pub struct HvmParams {
    values: [u64; HVM_NR_PARAMS as usize],
}

impl Default for HvmParams {
    fn default() -> Self {
        Self::new()
    }
}

/// Parameters Xen has deprecated; guests get `-EOPNOTSUPP` for them.
fn deprecated(index: u32) -> bool {
    matches!(
        index,
        HVM_PARAM_PAE_ENABLED
            | HVM_PARAM_MEMORY_EVENT_CR0
            | HVM_PARAM_MEMORY_EVENT_CR3
            | HVM_PARAM_MEMORY_EVENT_CR4
            | HVM_PARAM_MEMORY_EVENT_INT3
            | HVM_PARAM_MEMORY_EVENT_SINGLE_STEP
            | HVM_PARAM_MEMORY_EVENT_MSR
    )
}

impl HvmParams {
    pub fn new() -> Self {
        Self {
            values: [0; HVM_NR_PARAMS as usize],
        }
    }

    /// Toolstack write (no guest access rules): store/console PFN and
    /// evtchn, timer mode, ...
    pub fn preset(&mut self, index: u32, value: u64) -> Result<(), Errno> {
        let slot = self.values.get_mut(index as usize).ok_or(Errno::EINVAL)?;
        *slot = value;
        Ok(())
    }

    /// Raw read (toolstack or xen-emu internal).
    pub fn get_raw(&self, index: u32) -> Option<u64> {
        self.values.get(index as usize).copied()
    }

    /// `HVMOP_get_param` by the guest on itself.
    pub fn guest_get(&self, index: u32) -> Result<u64, Errno> {
        if index >= HVM_NR_PARAMS {
            return Err(Errno::EINVAL);
        }
        match index {
            HVM_PARAM_CALLBACK_IRQ
            | HVM_PARAM_VM86_TSS
            | HVM_PARAM_VM86_TSS_SIZED
            | HVM_PARAM_ACPI_IOPORTS_LOCATION
            | HVM_PARAM_VM_GENERATION_ID_ADDR
            | HVM_PARAM_STORE_PFN
            | HVM_PARAM_STORE_EVTCHN
            | HVM_PARAM_CONSOLE_PFN
            | HVM_PARAM_CONSOLE_EVTCHN
            | HVM_PARAM_ALTP2M
            | HVM_PARAM_X87_FIP_WIDTH => Ok(self.values[index as usize]),
            i if deprecated(i) => Err(Errno::EOPNOTSUPP),
            _ => Err(Errno::EPERM),
        }
    }

    /// Access check and value validation of `HVMOP_set_param` by the guest
    /// on itself. The caller applies side effects, then [`Self::commit`].
    pub fn guest_check_set(&self, index: u32, value: u64) -> Result<(), Errno> {
        if index >= HVM_NR_PARAMS {
            return Err(Errno::EINVAL);
        }
        match index {
            HVM_PARAM_CALLBACK_IRQ
            | HVM_PARAM_VM86_TSS
            | HVM_PARAM_VM86_TSS_SIZED
            | HVM_PARAM_ACPI_IOPORTS_LOCATION
            | HVM_PARAM_VM_GENERATION_ID_ADDR
            | HVM_PARAM_STORE_EVTCHN
            | HVM_PARAM_CONSOLE_EVTCHN => Ok(()),
            HVM_PARAM_X87_FIP_WIDTH => match value {
                0 | 2 | 4 | 8 => Ok(()),
                _ => Err(Errno::EINVAL),
            },
            i if deprecated(i) => Err(Errno::EOPNOTSUPP),
            _ => Err(Errno::EPERM),
        }
    }

    /// Stores a value that passed [`Self::guest_check_set`].
    pub fn commit(&mut self, index: u32, value: u64) {
        if let Some(slot) = self.values.get_mut(index as usize) {
            *slot = value;
        }
    }
}
