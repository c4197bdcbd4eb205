//! `run_domain`: builds the VM (memory, boot images, ACPI, CPUID, hypercall
//! trapping, console and XenStore), runs the vCPU(s) and turns the end of the
//! domain into a [`RunOutcome`] or a [`VmmError`].

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use kvm_bindings::{kvm_enable_cap, KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER};
use kvm_ioctls::{Kvm, MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VmFd};
use xen_emu::{Domain, DomainConfig};

use crate::backends::Backends;
use crate::control::{DomainControl, Ended, MemoryRange};
use crate::cpuid::{self, CpuidConfig};
use crate::memory::{DomainMemory, MemslotSink};
use crate::platform::{KvmPlatform, Shared};
use crate::start_info::Module;
use crate::vcpu::{TrapPath, Vcpu};
use crate::{acpi, e820, elf, kvm_xen, layout, start_info};
use crate::{ConsoleIo, RunOutcome, RunStats, VmConfig, VmmError};

const KVM_CAP_XEN_HVM: u64 = 38;
const KVM_CAP_SYNC_REGS: u64 = 74;

/// Memslots through `KVM_SET_USER_MEMORY_REGION`.
struct VmSlots(Arc<VmFd>);

impl MemslotSink for VmSlots {
    fn set_slot(&self, slot: u32, gpa: u64, size: u64, host: u64) -> Result<(), String> {
        let region = kvm_bindings::kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host,
        };
        // SAFETY: `host..host+size` is a mapping owned by DomainMemory that
        // lives as long as the VM (guest memory is never unmapped while the
        // domain exists); deleting a slot (size 0) touches no memory.
        unsafe { self.0.set_user_memory_region(region) }.map_err(|e| {
            format!("KVM_SET_USER_MEMORY_REGION slot {slot} at {gpa:#x}+{size:#x}: {e}")
        })
    }
}

fn check_config(c: &VmConfig) -> Result<(), VmmError> {
    let bad = |m: String| Err(VmmError::Config(m));
    if c.memory_mib == 0 {
        return bad("memory must be at least 1 MiB".into());
    }
    if c.max_memory_mib < c.memory_mib {
        return bad(format!(
            "maxmem ({}) is below memory ({})",
            c.max_memory_mib, c.memory_mib
        ));
    }
    if c.memory_mib > (1 << 20) {
        return bad(format!(
            "memory ({} MiB) is more than this VMM supports (1 TiB)",
            c.memory_mib
        ));
    }
    if c.vcpus == 0 || c.vcpus > c.max_vcpus {
        return bad(format!(
            "vcpus ({}) must be between 1 and maxvcpus ({})",
            c.vcpus, c.max_vcpus
        ));
    }
    if c.max_vcpus > 128 {
        return bad(format!(
            "maxvcpus ({}) is above 128, the HVM limit",
            c.max_vcpus
        ));
    }
    Ok(())
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, VmmError> {
    std::fs::read(path).map_err(|source| VmmError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Which hypercall trap path this host offers, after enabling it.
fn setup_trap_path(kvm: &Kvm, vm: &VmFd, hypercall_msr: u32) -> Result<TrapPath, VmmError> {
    let xen_caps = vm.check_extension_raw(KVM_CAP_XEN_HVM);
    if xen_caps > 0 && (xen_caps as u32) & kvm_bindings::KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL != 0 {
        match kvm_xen::hvm_config(vm, &kvm_xen::intercept_config(hypercall_msr)) {
            Ok(()) => {
                tracing::info!(
                    "hypercalls: in-kernel intercept (KVM_CAP_XEN_HVM {xen_caps:#x}), KVM_EXIT_XEN"
                );
                return Ok(TrapPath::KvmXen);
            }
            Err(e) => tracing::warn!(
                "KVM_XEN_HVM_CONFIG failed ({e}); falling back to the hypercall page path"
            ),
        }
    }
    if kvm.check_extension_raw(u64::from(KVM_CAP_X86_USER_SPACE_MSR)) <= 0 {
        return Err(VmmError::MissingCapability(
            "KVM_CAP_X86_USER_SPACE_MSR (and KVM_CAP_XEN_HVM)",
        ));
    }
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_X86_USER_SPACE_MSR,
        ..Default::default()
    };
    cap.args[0] = u64::from(KVM_MSR_EXIT_REASON_FILTER);
    vm.enable_cap(&cap)
        .map_err(VmmError::kvm("KVM_ENABLE_CAP(X86_USER_SPACE_MSR)"))?;
    // A clear bit denies the access, which with the FILTER exit reason
    // sends it to us.
    let bitmap = [0u8; 1];
    let range = MsrFilterRange {
        flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
        base: hypercall_msr,
        msr_count: 1,
        bitmap: &bitmap,
    };
    vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &[range])
        .map_err(VmmError::kvm("KVM_X86_SET_MSR_FILTER"))?;
    tracing::info!("hypercalls: hypercall page of port-I/O stubs (MSR {hypercall_msr:#x} filtered), KVM_EXIT_IO");
    Ok(TrapPath::PortIo)
}

/// Builds the domain described by `config` and runs it until the guest
/// shuts down. The guest's console is `console`; it gets a private XenStore.
pub fn run_domain(config: VmConfig, console: ConsoleIo) -> Result<RunOutcome, VmmError> {
    let store = Arc::new(xenstore::Engine::new(xenstore::Config::default()));
    run_domain_with_store(config, console, store)
}

/// [`run_domain`] with the domain's XenStore served by `store` (shared with
/// the toolstack's socket front end).
pub fn run_domain_with_store(
    config: VmConfig,
    console: ConsoleIo,
    store: Arc<xenstore::Engine>,
) -> Result<RunOutcome, VmmError> {
    match run_inner(config, console, store, None)? {
        Ended::Shutdown(outcome) => Ok(outcome),
        Ended::Destroyed { .. } => Err(VmmError::Thread(
            "domain destroyed without a control handle".into(),
        )),
    }
}

/// [`run_domain_with_store`] under the toolstack's `control` (pause,
/// destroy, forced shutdown, live log, core dump; see [`DomainControl`]).
pub fn run_domain_controlled(
    config: VmConfig,
    console: ConsoleIo,
    store: Arc<xenstore::Engine>,
    control: &DomainControl,
) -> Result<Ended, VmmError> {
    run_inner(config, console, store, Some(control))
}

fn run_inner(
    config: VmConfig,
    console: ConsoleIo,
    store: Arc<xenstore::Engine>,
    control: Option<&DomainControl>,
) -> Result<Ended, VmmError> {
    let started = Instant::now();
    check_config(&config)?;
    let kernel = read_file(&config.kernel)?;
    let image = elf::parse(&kernel).map_err(|e| VmmError::Kernel {
        path: config.kernel.clone(),
        reason: e.to_string(),
    })?;
    let modules = config
        .modules
        .iter()
        .map(|m| {
            Ok(Module {
                data: read_file(&m.path)?,
                cmdline: m.cmdline.clone(),
            })
        })
        .collect::<Result<Vec<_>, VmmError>>()?;

    let kvm = Kvm::new().map_err(VmmError::kvm("opening /dev/kvm"))?;
    let vm = Arc::new(kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM"))?);
    vm.set_tss_address(0xfffb_d000)
        .map_err(VmmError::kvm("KVM_SET_TSS_ADDR"))?;
    if config.apic {
        vm.create_irq_chip()
            .map_err(VmmError::kvm("KVM_CREATE_IRQCHIP"))?;
    }

    // Guest memory: RAM, the special pages, the ACPI tables.
    let ram = layout::RamLayout::new(config.memory_mib << 20);
    let mut regions = ram.ranges();
    regions.push((layout::SPECIAL_REGION_START, layout::SPECIAL_REGION_SIZE));
    regions.push((layout::ACPI_BASE, layout::ACPI_SIZE));
    let mem = Arc::new(DomainMemory::new(&regions, Box::new(VmSlots(vm.clone())))?);
    let tables = acpi::build(&acpi::AcpiConfig {
        base: layout::ACPI_TABLES,
        vcpus: config.vcpus,
        max_vcpus: config.max_vcpus,
        apic: config.apic,
    });
    if layout::ACPI_TABLES + tables.bytes.len() as u64 > layout::ACPI_BASE + layout::ACPI_SIZE {
        return Err(VmmError::Config(format!(
            "ACPI tables for {} vCPUs do not fit",
            config.max_vcpus
        )));
    }
    let memmap = e820::build(
        &ram,
        &e820::AcpiModules {
            rsdp: tables.rsdp,
            tables_len: tables.tables_len,
        },
    );
    xen_emu::guest::GuestMemory::write(&*mem, layout::ACPI_TABLES, &tables.bytes)
        .map_err(|e| VmmError::Memory(format!("writing ACPI tables: {e}")))?;
    let boot = start_info::load(
        &*mem,
        &ram,
        &start_info::BootImages {
            file: &kernel,
            image: &image,
            cmdline: &config.cmdline,
            modules: &modules,
            memmap: &memmap,
            rsdp: tables.rsdp,
        },
    )
    .map_err(|e| match e {
        start_info::PlaceError::NoRoom { .. } | start_info::PlaceError::KernelOutsideRam(..) => {
            VmmError::NoRoom(e.to_string())
        }
        start_info::PlaceError::Write(_) => VmmError::Memory(e.to_string()),
    })?;
    tracing::debug!(
        "entry {:#x}, start info at {:#x}",
        boot.entry,
        boot.start_info
    );

    let hypercall_msr = if config.viridian {
        0x4000_0200
    } else {
        layout::HYPERCALL_MSR
    };
    let path = setup_trap_path(&kvm, &vm, hypercall_msr)?;
    let sync_regs = kvm.check_extension_raw(KVM_CAP_SYNC_REGS) > 0;
    if !sync_regs {
        tracing::info!("KVM_CAP_SYNC_REGS missing: hypercalls use KVM_GET/SET_REGS");
    }

    let shared = Arc::new(Shared::new(config.max_vcpus));
    if config.debug_hypercall {
        let _ = shared.debug_vm.set(vm.clone());
    }
    let platform = Arc::new(KvmPlatform::new(
        vm.clone(),
        mem.clone(),
        shared.clone(),
        config.apic,
    ));
    let dcfg = DomainConfig {
        domid: config.domid,
        max_vcpus: config.max_vcpus,
        xen_version: config.xen_version,
        max_grant_frames: config.max_grant_frames,
        max_event_channels: config.max_event_channels,
        max_pirq: config.max_pirq,
        uuid: config.uuid,
        memory_map: memmap
            .iter()
            .map(|e| xen_abi::memory::E820Entry {
                addr: e.addr,
                size: e.size,
                type_: e.kind,
            })
            .collect(),
        current_pages: (config.memory_mib << 20) / layout::PAGE_SIZE,
        max_pages: (config.max_memory_mib << 20) / layout::PAGE_SIZE,
        timer_mode: config.timer_mode as u64,
        has_pirq: config.emu_use_pirq,
        time_offset_seconds: config.time_offset_seconds,
        ..DomainConfig::default()
    };
    let domain = Domain::new(dcfg, mem.clone(), platform.clone());
    let _ = platform.callback_gsi.domain.set(Arc::downgrade(&domain));
    let xs = store.clone();
    let backends = Backends::start(&config, domain.clone(), mem.clone(), store, console)?;
    // PV devices (disk=) after the domain's own nodes exist.
    let devices = match crate::devices::Devices::start(&config, domain.clone(), mem.clone(), &xs) {
        Ok(d) => d,
        Err(e) => {
            let _ = backends.stop();
            return Err(e);
        }
    };

    // vCPUs: the boot vCPU starts at the PVH entry; with an in-kernel LAPIC
    // the others wait in KVM for INIT/SIPI (KVM's boot CPU is id 0). One
    // thread each.
    let host_cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(VmmError::kvm("KVM_GET_SUPPORTED_CPUID"))?;
    let run_size = kvm
        .get_vcpu_mmap_size()
        .map_err(VmmError::kvm("KVM_GET_VCPU_MMAP_SIZE"))?;
    // Every possible vCPU (maxvcpus) gets a KVM vCPU and a thread, as Xen
    // allocates them all: those beyond `vcpus` are merely offline (disabled
    // in the MADT, "offline" in XenStore) until the guest brings them up
    // with INIT/SIPI or VCPUOP_up.
    let online = if config.apic { config.max_vcpus } else { 1 };
    if online < config.vcpus {
        tracing::warn!(
            "apic=0: only the boot vCPU can run ({} configured)",
            config.vcpus
        );
    }
    if let Some(c) = control {
        c.attach(shared.clone(), domain.clone(), online);
        c.attach_devices(devices.hotplug());
    }
    // Detaches the control handle however this function returns.
    let _detach = DetachOnDrop(control);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut handles = Vec::new();
    let mut spawn_error = None;
    for id in 0..online {
        let fd = vm
            .create_vcpu(u64::from(acpi::apic_id(id)))
            .map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
        let ccfg = CpuidConfig {
            xen_version: config.xen_version,
            viridian: config.viridian,
            apic: config.apic,
            nested_hvm: config.nested_hvm,
            xen_vapic: config.xen_vapic,
            domid: config.domid,
            tsc_khz: fd.get_tsc_khz().unwrap_or(0),
            hypercall_msr,
        };
        let mut entries = cpuid::build(host_cpuid.as_slice(), &ccfg, id, acpi::apic_id(id));
        cpuid::apply_policy(
            &mut entries,
            host_cpuid.as_slice(),
            &ccfg,
            &config.cpuid_policy,
        )
        .map_err(VmmError::Config)?;
        let cpuid = kvm_bindings::CpuId::from_entries(&entries)
            .map_err(|e| VmmError::Config(format!("CPUID table: {e:?}")))?;
        fd.set_cpuid2(&cpuid)
            .map_err(VmmError::kvm("KVM_SET_CPUID2"))?;
        if !config.apic {
            crate::vcpu::disable_lapic(&fd, id == 0)?;
        }
        if id == 0 {
            crate::vcpu::set_pvh_entry_state(&fd, boot.entry, boot.start_info)?;
        }
        let mut vcpu = Vcpu {
            id,
            fd,
            run_size,
            domain: domain.clone(),
            mem: mem.clone(),
            shared: shared.clone(),
            path,
            hypercall_msr,
            sync_regs,
            stats: Default::default(),
            control: control.cloned(),
            apic: config.apic,
        };
        if let Some(c) = shared.vcpu_ctl.get(id as usize) {
            c.set_exists(true);
        }
        let done = done_tx.clone();
        let pin = crate::affinity::for_vcpu(&config.vcpu_affinity, id).map(<[u32]>::to_vec);
        let spawned = std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || {
                let mut first = None;
                // Pinned before the first instruction, as Xen applies the
                // hard affinity before the domain is unpaused.
                let r = match pin {
                    Some(cpus) => crate::affinity::pin_current_thread(id, &cpus),
                    None => Ok(()),
                }
                .and_then(|()| vcpu.run(started, &mut first));
                let failed = r.is_err();
                let _ = done.send(id);
                (r, first, vcpu.stats, failed)
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                spawn_error = Some(VmmError::Thread(format!("spawning vcpu{id}: {e}")));
                break;
            }
        }
    }
    drop(done_tx);
    let _ = vm.as_raw_fd();

    // The first vCPU to finish (shutdown or failure) ends the domain; the
    // others are kicked until they have all left KVM_RUN.
    if spawn_error.is_none() {
        let _ = done_rx.recv();
    }
    shared.request_stop();
    platform.callback_gsi.stop();
    domain.wake_all();
    if let Some(c) = control {
        c.notify();
    }
    let mut finished = 1;
    while finished < handles.len() {
        match done_rx.recv_timeout(std::time::Duration::from_millis(10)) {
            Ok(_) => finished += 1,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                shared.request_stop();
                domain.wake_all();
                if let Some(c) = control {
                    c.notify();
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    devices.stop();
    let console_result = backends.stop();
    let mut bsp = None;
    let mut first_error = spawn_error;
    for (i, h) in handles.into_iter().enumerate() {
        let (r, first, stats, _) = h
            .join()
            .map_err(|_| VmmError::Thread(format!("vcpu{i} panicked")))?;
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
        if i == 0 {
            bsp = Some((first, stats));
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    console_result?;
    let (first_entry, stats) = bsp.ok_or_else(|| VmmError::Thread("no boot vCPU".into()))?;

    let reason = *shared.shutdown.lock().unwrap_or_else(|e| e.into_inner());
    let hypervisor_log = std::mem::take(
        &mut *shared
            .hypervisor_log
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    let reason = match (reason, control) {
        (Some(r), _) => r,
        (None, Some(c)) if c.is_destroyed() => return Ok(Ended::Destroyed { hypervisor_log }),
        (None, _) => {
            return Err(VmmError::Thread(
                "vCPU stopped without a shutdown request".into(),
            ))
        }
    };
    if let Some(c) = control.filter(|c| c.wants_dump(reason)) {
        c.record_dump(snapshot_memory(&mem)?);
    }
    Ok(Ended::Shutdown(RunOutcome {
        exit: reason,
        hypervisor_log,
        stats: RunStats {
            time_to_first_entry: first_entry.unwrap_or_default(),
            exits: stats.exits,
            hypercalls: stats.hypercalls,
            hypercall_service_ns: stats.hypercall_service_ns,
        },
    }))
}

/// Clears the control handle's view of this run when `run_inner` returns.
struct DetachOnDrop<'a>(Option<&'a DomainControl>);

impl Drop for DetachOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.detach();
        }
    }
}

/// A copy of every guest RAM region, for a core dump.
fn snapshot_memory(mem: &DomainMemory) -> Result<Vec<MemoryRange>, VmmError> {
    use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryRegion};
    let mut out = Vec::new();
    for region in mem.ram().iter() {
        let len = usize::try_from(region.len())
            .map_err(|_| VmmError::Memory("guest region too large to dump".into()))?;
        let mut data = vec![0u8; len];
        mem.ram()
            .read_slice(&mut data, region.start_addr())
            .map_err(|e| VmmError::Memory(format!("reading guest memory for a core dump: {e}")))?;
        out.push(MemoryRange {
            gpa: region.start_addr().0,
            data,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_say_what_to_fix() {
        let mut c = VmConfig::new("t", "/nonexistent");
        c.max_memory_mib = 64;
        c.memory_mib = 128;
        let e = check_config(&c).expect_err("invalid config").to_string();
        assert!(e.contains("maxmem"), "{e}");
        let mut c = VmConfig::new("t", "/nonexistent");
        c.vcpus = 3;
        assert!(check_config(&c)
            .expect_err("invalid config")
            .to_string()
            .contains("vcpus"));
        assert!(check_config(&VmConfig::new("t", "/x")).is_ok());
    }

    #[test]
    fn missing_kernel_is_an_io_error_naming_the_file() {
        let e = run_domain(
            VmConfig::new("t", "/nonexistent/kernel"),
            ConsoleIo::output_only(Box::new(std::io::sink())),
        )
        .expect_err("must fail");
        assert!(e.to_string().contains("/nonexistent/kernel"), "{e}");
    }
}
