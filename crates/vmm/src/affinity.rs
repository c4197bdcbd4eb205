//! vCPU hard affinity (xl.cfg `cpus=`): libxl pins each vCPU to a set of
//! physical CPUs (`libxl_set_vcpuaffinity`, hard map). Here a vCPU is a
//! host thread, so the same promise is the thread's Linux CPU affinity,
//! set by the vCPU thread on itself before its first `KVM_RUN`.

use crate::VmmError;

/// The CPU set for vCPU `id` from `VmConfig::vcpu_affinity`: `None` when
/// the vCPU is not pinned (no entry, or an empty one).
pub fn for_vcpu(affinity: &[Vec<u32>], id: u32) -> Option<&[u32]> {
    affinity
        .get(id as usize)
        .map(Vec::as_slice)
        .filter(|cpus| !cpus.is_empty())
}

/// Restricts the calling thread to `cpus` (`sched_setaffinity(0, ...)`).
/// Fails, as Xen fails `XEN_DOMCTL_setvcpuaffinity`, when no CPU of the
/// set is one this process may run on (offline, outside its cpuset) or a
/// number is beyond what the kernel's CPU mask holds.
pub fn pin_current_thread(vcpu: u32, cpus: &[u32]) -> Result<(), VmmError> {
    // SAFETY: cpu_set_t is plain bits; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for &cpu in cpus {
        if cpu as usize >= max {
            return Err(VmmError::Config(format!(
                "cpus: vCPU {vcpu}: CPU {cpu} is beyond the {max} CPUs Linux affinity masks hold"
            )));
        }
        // SAFETY: `cpu` is below the mask's bit count (checked above).
        unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread; the kernel only reads the mask.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if r != 0 {
        let err = std::io::Error::last_os_error();
        return Err(VmmError::Config(format!(
            "cpus: cannot pin vCPU {vcpu} to host CPUs {}: {err} \
             (are those CPUs online and allowed to this process?)",
            list(cpus)
        )));
    }
    tracing::debug!("vcpu{vcpu} pinned to host CPUs {}", list(cpus));
    Ok(())
}

fn list(cpus: &[u32]) -> String {
    cpus.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed_cpus() -> Vec<u32> {
        // SAFETY: as above; the kernel fills `set`.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid mask of the size passed, for the calling thread.
        let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
        assert_eq!(r, 0, "sched_getaffinity");
        (0..libc::CPU_SETSIZE as u32)
            // SAFETY: index below CPU_SETSIZE.
            .filter(|&c| unsafe { libc::CPU_ISSET(c as usize, &set) })
            .collect()
    }

    #[test]
    fn an_unpinned_vcpu_has_no_set() {
        let aff = vec![vec![1], vec![]];
        assert_eq!(for_vcpu(&aff, 0), Some(&[1][..]));
        assert_eq!(for_vcpu(&aff, 1), None);
        assert_eq!(for_vcpu(&aff, 2), None);
    }

    #[test]
    fn pinning_restricts_the_calling_thread() {
        let last = *allowed_cpus().last().expect("some CPU allowed");
        let seen = std::thread::spawn(move || {
            pin_current_thread(0, &[last]).expect("pin");
            allowed_cpus()
        })
        .join()
        .expect("thread");
        assert_eq!(seen, [last]);
    }

    #[test]
    fn a_cpu_beyond_the_mask_is_refused() {
        let err = pin_current_thread(3, &[1 << 20]).expect_err("refused");
        assert!(err.to_string().contains("vCPU 3"), "{err}");
    }
}
