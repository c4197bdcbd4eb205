//! Proves the Rust structs and constants against Debian's `libxen-dev`
//! headers: a generated C translation unit puts `sizeof`/`offsetof`/constant
//! values into an array, gcc compiles it for `-m64` and `-m32`, and the
//! values are read back from gcc's assembly output. Reading the compiler's
//! output instead of running the program lets the `-m32` build work without
//! a 32-bit C library (no gcc-multilib needed): the i386 compile of the same
//! headers *is* Xen's compat layout, so `*Compat` types are checked against
//! it.
//!
//! The headers come from `scripts/debian-deps.sh` (env `XKVM_DEBS` names its
//! root). Without them or without gcc the test is skipped with a message,
//! unless `CI=true`.

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use xen_abi::event_channel::*;
use xen_abi::grant_table::*;
use xen_abi::hvm::hvm_op::*;
use xen_abi::hvm::start_info::*;
use xen_abi::io::console::*;
use xen_abi::io::xs_wire::*;
use xen_abi::memory::*;
use xen_abi::physdev::*;
use xen_abi::sched::*;
use xen_abi::vcpu::*;
use xen_abi::version::*;
use xen_abi::xen::*;

/// One C expression and the value Rust says it has.
struct Check {
    c: String,
    rust: u64,
}

macro_rules! size {
    ($c:expr, $t:ty) => {
        Check {
            c: format!("sizeof({})", $c),
            rust: size_of::<$t>() as u64,
        }
    };
}
macro_rules! off {
    ($c:expr, $cf:expr, $t:ty, $($f:tt)+) => {
        Check { c: format!("offsetof({}, {})", $c, $cf), rust: offset_of!($t, $($f)+) as u64 }
    };
}
macro_rules! val {
    ($c:expr, $v:expr) => {
        Check {
            c: format!("({})", $c),
            rust: ($v) as u64,
        }
    };
}

const HEADERS: &[&str] = &[
    "xen/xen.h",
    "xen/memory.h",
    "xen/event_channel.h",
    "xen/grant_table.h",
    "xen/sched.h",
    "xen/vcpu.h",
    "xen/version.h",
    "xen/physdev.h",
    "xen/features.h",
    "xen/hvm/hvm_op.h",
    "xen/hvm/params.h",
    "xen/arch-x86/hvm/start_info.h",
    "xen/io/console.h",
    "xen/io/xs_wire.h",
];

/// Layouts identical in both ABIs, plus 64-bit ones.
fn checks_64() -> Vec<Check> {
    vec![
        // start_info.h
        size!("struct hvm_start_info", HvmStartInfo),
        off!(
            "struct hvm_start_info",
            "modlist_paddr",
            HvmStartInfo,
            modlist_paddr
        ),
        off!(
            "struct hvm_start_info",
            "cmdline_paddr",
            HvmStartInfo,
            cmdline_paddr
        ),
        off!(
            "struct hvm_start_info",
            "rsdp_paddr",
            HvmStartInfo,
            rsdp_paddr
        ),
        off!(
            "struct hvm_start_info",
            "memmap_paddr",
            HvmStartInfo,
            memmap_paddr
        ),
        off!(
            "struct hvm_start_info",
            "memmap_entries",
            HvmStartInfo,
            memmap_entries
        ),
        size!("struct hvm_modlist_entry", HvmModlistEntry),
        off!(
            "struct hvm_modlist_entry",
            "cmdline_paddr",
            HvmModlistEntry,
            cmdline_paddr
        ),
        size!("struct hvm_memmap_table_entry", HvmMemmapTableEntry),
        off!(
            "struct hvm_memmap_table_entry",
            "type",
            HvmMemmapTableEntry,
            type_
        ),
        val!("XEN_HVM_START_MAGIC_VALUE", XEN_HVM_START_MAGIC_VALUE),
        val!("XEN_HVM_MEMMAP_TYPE_PMEM", XEN_HVM_MEMMAP_TYPE_PMEM),
        // xen.h
        size!("struct vcpu_time_info", VcpuTimeInfo),
        off!(
            "struct vcpu_time_info",
            "system_time",
            VcpuTimeInfo,
            system_time
        ),
        off!(
            "struct vcpu_time_info",
            "tsc_shift",
            VcpuTimeInfo,
            tsc_shift
        ),
        off!("struct vcpu_time_info", "flags", VcpuTimeInfo, flags),
        size!("struct arch_vcpu_info", ArchVcpuInfo),
        size!("struct vcpu_info", VcpuInfo),
        off!(
            "struct vcpu_info",
            "evtchn_upcall_mask",
            VcpuInfo,
            evtchn_upcall_mask
        ),
        off!(
            "struct vcpu_info",
            "evtchn_pending_sel",
            VcpuInfo,
            evtchn_pending_sel
        ),
        off!("struct vcpu_info", "arch", VcpuInfo, arch),
        off!("struct vcpu_info", "time", VcpuInfo, time),
        size!("struct arch_shared_info", ArchSharedInfo),
        off!(
            "struct arch_shared_info",
            "p2m_generation",
            ArchSharedInfo,
            p2m_generation
        ),
        size!("struct shared_info", SharedInfo),
        off!(
            "struct shared_info",
            "evtchn_pending",
            SharedInfo,
            evtchn_pending
        ),
        off!("struct shared_info", "evtchn_mask", SharedInfo, evtchn_mask),
        off!("struct shared_info", "wc_version", SharedInfo, wc_version),
        off!("struct shared_info", "wc_sec", SharedInfo, wc_sec),
        off!("struct shared_info", "wc_nsec", SharedInfo, wc_nsec),
        off!("struct shared_info", "wc_sec_hi", SharedInfo, wc_sec_hi),
        off!("struct shared_info", "arch", SharedInfo, arch),
        val!("XEN_LEGACY_MAX_VCPUS", XEN_LEGACY_MAX_VCPUS),
        val!("__HYPERVISOR_memory_op", HYPERVISOR_MEMORY_OP),
        val!("__HYPERVISOR_xen_version", HYPERVISOR_XEN_VERSION),
        val!("__HYPERVISOR_console_io", HYPERVISOR_CONSOLE_IO),
        val!("__HYPERVISOR_grant_table_op", HYPERVISOR_GRANT_TABLE_OP),
        val!("__HYPERVISOR_vcpu_op", HYPERVISOR_VCPU_OP),
        val!("__HYPERVISOR_sched_op", HYPERVISOR_SCHED_OP),
        val!("__HYPERVISOR_event_channel_op", HYPERVISOR_EVENT_CHANNEL_OP),
        val!("__HYPERVISOR_physdev_op", HYPERVISOR_PHYSDEV_OP),
        val!("__HYPERVISOR_hvm_op", HYPERVISOR_HVM_OP),
        val!("__HYPERVISOR_hypfs_op", HYPERVISOR_HYPFS_OP),
        val!("VIRQ_XENPMU", VIRQ_XENPMU),
        val!("NR_VIRQS", NR_VIRQS),
        val!("DOMID_SELF", xen_abi::DOMID_SELF),
        val!("DOMID_INVALID", xen_abi::DOMID_INVALID),
        val!("CONSOLEIO_read", CONSOLEIO_READ),
        val!("SIF_MOD_START_PFN", SIF_MOD_START_PFN),
        // memory.h
        size!("struct xen_memory_reservation", XenMemoryReservation),
        off!(
            "struct xen_memory_reservation",
            "nr_extents",
            XenMemoryReservation,
            nr_extents
        ),
        off!(
            "struct xen_memory_reservation",
            "mem_flags",
            XenMemoryReservation,
            mem_flags
        ),
        off!(
            "struct xen_memory_reservation",
            "domid",
            XenMemoryReservation,
            domid
        ),
        size!("struct xen_add_to_physmap", XenAddToPhysmap),
        off!("struct xen_add_to_physmap", "space", XenAddToPhysmap, space),
        off!("struct xen_add_to_physmap", "idx", XenAddToPhysmap, idx),
        off!("struct xen_add_to_physmap", "gpfn", XenAddToPhysmap, gpfn),
        size!("struct xen_memory_map", XenMemoryMap),
        off!("struct xen_memory_map", "buffer", XenMemoryMap, buffer),
        size!("struct xen_foreign_memory_map", XenForeignMemoryMap),
        off!(
            "struct xen_foreign_memory_map",
            "map",
            XenForeignMemoryMap,
            map
        ),
        val!("XENMEM_memory_map", XENMEM_MEMORY_MAP),
        val!("XENMEM_set_memory_map", XENMEM_SET_MEMORY_MAP),
        val!("XENMEM_current_reservation", XENMEM_CURRENT_RESERVATION),
        val!("XENMEM_maximum_reservation", XENMEM_MAXIMUM_RESERVATION),
        val!("XENMEM_add_to_physmap", XENMEM_ADD_TO_PHYSMAP),
        val!("XENMEM_acquire_resource", XENMEM_ACQUIRE_RESOURCE),
        val!("XENMAPSPACE_dev_mmio", XENMAPSPACE_DEV_MMIO),
        val!("XENMAPIDX_grant_table_status", XENMAPIDX_GRANT_TABLE_STATUS),
        // event_channel.h
        size!("struct evtchn_alloc_unbound", EvtchnAllocUnbound),
        off!(
            "struct evtchn_alloc_unbound",
            "port",
            EvtchnAllocUnbound,
            port
        ),
        size!("struct evtchn_bind_interdomain", EvtchnBindInterdomain),
        off!(
            "struct evtchn_bind_interdomain",
            "remote_port",
            EvtchnBindInterdomain,
            remote_port
        ),
        off!(
            "struct evtchn_bind_interdomain",
            "local_port",
            EvtchnBindInterdomain,
            local_port
        ),
        size!("struct evtchn_bind_virq", EvtchnBindVirq),
        size!("struct evtchn_bind_pirq", EvtchnBindPirq),
        size!("struct evtchn_bind_ipi", EvtchnBindIpi),
        size!("struct evtchn_close", EvtchnClose),
        size!("struct evtchn_send", EvtchnSend),
        size!("struct evtchn_unmask", EvtchnUnmask),
        size!("struct evtchn_status", EvtchnStatus),
        off!("struct evtchn_status", "port", EvtchnStatus, port),
        off!("struct evtchn_status", "status", EvtchnStatus, status),
        off!("struct evtchn_status", "vcpu", EvtchnStatus, vcpu),
        off!(
            "struct evtchn_status",
            "u.interdomain.dom",
            EvtchnStatus,
            u0
        ),
        off!(
            "struct evtchn_status",
            "u.interdomain.port",
            EvtchnStatus,
            u1
        ),
        off!("struct evtchn_status", "u.virq", EvtchnStatus, u0),
        size!("struct evtchn_bind_vcpu", EvtchnBindVcpu),
        size!("struct evtchn_reset", EvtchnReset),
        size!("struct evtchn_init_control", EvtchnInitControl),
        off!(
            "struct evtchn_init_control",
            "link_bits",
            EvtchnInitControl,
            link_bits
        ),
        val!("EVTCHNOP_set_priority", EVTCHNOP_SET_PRIORITY),
        val!("EVTCHNSTAT_ipi", EVTCHNSTAT_IPI),
        // grant_table.h
        size!("struct grant_entry_v1", GrantEntryV1),
        off!("struct grant_entry_v1", "frame", GrantEntryV1, frame),
        size!("struct gnttab_setup_table", GnttabSetupTable),
        off!(
            "struct gnttab_setup_table",
            "status",
            GnttabSetupTable,
            status
        ),
        off!(
            "struct gnttab_setup_table",
            "frame_list",
            GnttabSetupTable,
            frame_list
        ),
        size!("struct gnttab_query_size", GnttabQuerySize),
        off!(
            "struct gnttab_query_size",
            "max_nr_frames",
            GnttabQuerySize,
            max_nr_frames
        ),
        off!(
            "struct gnttab_query_size",
            "status",
            GnttabQuerySize,
            status
        ),
        size!("struct gnttab_set_version", GnttabSetVersion),
        size!("struct gnttab_get_version", GnttabGetVersion),
        off!(
            "struct gnttab_get_version",
            "version",
            GnttabGetVersion,
            version
        ),
        size!("struct gnttab_copy", GnttabCopy),
        off!("struct gnttab_copy", "dest", GnttabCopy, dest),
        off!("struct gnttab_copy", "dest.offset", GnttabCopy, dest.offset),
        off!("struct gnttab_copy", "len", GnttabCopy, len),
        off!("struct gnttab_copy", "status", GnttabCopy, status),
        val!("GNTTABOP_cache_flush", GNTTABOP_CACHE_FLUSH),
        val!("GNTTAB_RESERVED_XENSTORE", GNTTAB_RESERVED_XENSTORE),
        val!("GTF_sub_page", GTF_SUB_PAGE),
        val!("GTF_writing", GTF_WRITING),
        val!("GNTCOPY_dest_gref", GNTCOPY_DEST_GREF),
        val!("(unsigned)GNTST_no_space", GNTST_NO_SPACE as i32 as u32),
        // sched.h
        size!("struct sched_shutdown", SchedShutdown),
        size!("struct sched_poll", SchedPoll),
        off!("struct sched_poll", "nr_ports", SchedPoll, nr_ports),
        off!("struct sched_poll", "timeout", SchedPoll, timeout),
        size!("struct sched_remote_shutdown", SchedRemoteShutdown),
        size!("struct sched_watchdog", SchedWatchdog),
        val!("SHUTDOWN_soft_reset", SHUTDOWN_SOFT_RESET),
        val!("SCHEDOP_pin_override", SCHEDOP_PIN_OVERRIDE),
        // vcpu.h
        size!("struct vcpu_runstate_info", VcpuRunstateInfo),
        off!("struct vcpu_runstate_info", "time", VcpuRunstateInfo, time),
        size!("struct vcpu_set_periodic_timer", VcpuSetPeriodicTimer),
        size!("struct vcpu_set_singleshot_timer", VcpuSetSingleshotTimer),
        off!(
            "struct vcpu_set_singleshot_timer",
            "flags",
            VcpuSetSingleshotTimer,
            flags
        ),
        size!("struct vcpu_register_vcpu_info", VcpuRegisterVcpuInfo),
        off!(
            "struct vcpu_register_vcpu_info",
            "offset",
            VcpuRegisterVcpuInfo,
            offset
        ),
        size!(
            "struct vcpu_register_runstate_memory_area",
            VcpuRegisterMemoryArea
        ),
        val!(
            "VCPUOP_register_vcpu_time_memory_area",
            VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA
        ),
        // version.h
        size!("struct xen_compile_info", XenCompileInfo),
        off!(
            "struct xen_compile_info",
            "compile_date",
            XenCompileInfo,
            compile_date
        ),
        size!("xen_extraversion_t", [u8; XEN_EXTRAVERSION_LEN]),
        size!("xen_capabilities_info_t", [u8; XEN_CAPABILITIES_INFO_LEN]),
        size!("xen_changeset_info_t", [u8; XEN_CHANGESET_INFO_LEN]),
        size!("xen_domain_handle_t", [u8; XEN_DOMAIN_HANDLE_LEN]),
        size!("xen_commandline_t", [u8; XEN_COMMANDLINE_LEN]),
        size!("struct xen_platform_parameters", XenPlatformParameters),
        size!("struct xen_feature_info", XenFeatureInfo),
        size!("struct xen_build_id", XenBuildId),
        val!("XENVER_build_id", XENVER_BUILD_ID),
        val!(
            "XENFEAT_direct_mapped",
            xen_abi::features::XENFEAT_DIRECT_MAPPED
        ),
        val!(
            "XENFEAT_hvm_safe_pvclock",
            xen_abi::features::XENFEAT_HVM_SAFE_PVCLOCK
        ),
        // physdev.h
        size!("struct physdev_eoi", PhysdevEoi),
        size!("struct physdev_irq_status_query", PhysdevIrqStatusQuery),
        size!("struct physdev_map_pirq", PhysdevMapPirq),
        off!(
            "struct physdev_map_pirq",
            "entry_nr",
            PhysdevMapPirq,
            entry_nr
        ),
        off!(
            "struct physdev_map_pirq",
            "table_base",
            PhysdevMapPirq,
            table_base
        ),
        size!("struct physdev_unmap_pirq", PhysdevUnmapPirq),
        size!("struct physdev_get_free_pirq", PhysdevGetFreePirq),
        size!("struct physdev_set_iopl", PhysdevSetIopl),
        val!("PHYSDEVOP_release_msix", PHYSDEVOP_RELEASE_MSIX),
        val!("MAP_PIRQ_TYPE_MULTI_MSI", MAP_PIRQ_TYPE_MULTI_MSI),
        // hvm_op.h, params.h
        size!("struct xen_hvm_param", XenHvmParam),
        off!("struct xen_hvm_param", "index", XenHvmParam, index),
        off!("struct xen_hvm_param", "value", XenHvmParam, value),
        size!("struct xen_hvm_get_time", XenHvmGetTime),
        size!(
            "struct xen_hvm_evtchn_upcall_vector",
            XenHvmEvtchnUpcallVector
        ),
        off!(
            "struct xen_hvm_evtchn_upcall_vector",
            "vector",
            XenHvmEvtchnUpcallVector,
            vector
        ),
        val!(
            "HVMOP_set_evtchn_upcall_vector",
            HVMOP_SET_EVTCHN_UPCALL_VECTOR
        ),
        val!("HVMOP_get_time", HVMOP_GET_TIME),
        val!("HVM_NR_PARAMS", xen_abi::hvm::params::HVM_NR_PARAMS),
        val!(
            "HVM_PARAM_CONSOLE_EVTCHN",
            xen_abi::hvm::params::HVM_PARAM_CONSOLE_EVTCHN
        ),
        val!(
            "HVM_PARAM_STORE_EVTCHN",
            xen_abi::hvm::params::HVM_PARAM_STORE_EVTCHN
        ),
        val!(
            "HVM_PARAM_TIMER_MODE",
            xen_abi::hvm::params::HVM_PARAM_TIMER_MODE
        ),
        val!("HVM_PARAM_MCA_CAP", xen_abi::hvm::params::HVM_PARAM_MCA_CAP),
        val!(
            "HVM_PARAM_CALLBACK_TYPE_VECTOR",
            xen_abi::hvm::params::HVM_PARAM_CALLBACK_TYPE_VECTOR
        ),
        val!(
            "HVMPTM_one_missed_tick_pending",
            xen_abi::hvm::params::HVMPTM_ONE_MISSED_TICK_PENDING
        ),
        // io/console.h, io/xs_wire.h
        size!("struct xencons_interface", XenconsInterface),
        off!("struct xencons_interface", "out", XenconsInterface, output),
        off!(
            "struct xencons_interface",
            "in_cons",
            XenconsInterface,
            in_cons
        ),
        off!(
            "struct xencons_interface",
            "out_prod",
            XenconsInterface,
            out_prod
        ),
        size!("struct xenstore_domain_interface", XenstoreDomainInterface),
        off!(
            "struct xenstore_domain_interface",
            "rsp",
            XenstoreDomainInterface,
            rsp
        ),
        off!(
            "struct xenstore_domain_interface",
            "rsp_prod",
            XenstoreDomainInterface,
            rsp_prod
        ),
        off!(
            "struct xenstore_domain_interface",
            "error",
            XenstoreDomainInterface,
            error
        ),
        val!("XENSTORE_RING_SIZE", XENSTORE_RING_SIZE),
        val!("XENSTORE_PAYLOAD_MAX", XENSTORE_PAYLOAD_MAX),
        val!("XENSTORE_ERROR_PROTO", XENSTORE_ERROR_PROTO),
        // multicall (xen.h)
        size!("struct multicall_entry", MulticallEntry),
        off!("struct multicall_entry", "result", MulticallEntry, result),
        off!("struct multicall_entry", "args", MulticallEntry, args),
        size!("struct mmuext_op", [u8; MMUEXT_OP_SIZE as usize]),
        val!("MMUEXT_PIN_L1_TABLE", MMUEXT_PIN_L1_TABLE),
        val!("MMUEXT_UNPIN_TABLE", MMUEXT_UNPIN_TABLE),
    ]
}

/// The 32-bit (compat) layouts, from an i386 compile of the same headers.
fn checks_32() -> Vec<Check> {
    vec![
        size!("struct multicall_entry", MulticallEntryCompat),
        off!(
            "struct multicall_entry",
            "result",
            MulticallEntryCompat,
            result
        ),
        off!("struct multicall_entry", "args", MulticallEntryCompat, args),
        size!("struct mmuext_op", [u8; MMUEXT_OP_SIZE_COMPAT as usize]),
        size!("struct hvm_start_info", HvmStartInfo),
        size!("struct hvm_modlist_entry", HvmModlistEntry),
        size!("struct hvm_memmap_table_entry", HvmMemmapTableEntry),
        size!("struct vcpu_time_info", VcpuTimeInfo),
        size!("struct arch_vcpu_info", ArchVcpuInfoCompat),
        size!("struct vcpu_info", VcpuInfoCompat),
        off!(
            "struct vcpu_info",
            "evtchn_pending_sel",
            VcpuInfoCompat,
            evtchn_pending_sel
        ),
        off!("struct vcpu_info", "time", VcpuInfoCompat, time),
        size!("struct arch_shared_info", ArchSharedInfoCompat),
        off!(
            "struct arch_shared_info",
            "wc_sec_hi",
            ArchSharedInfoCompat,
            wc_sec_hi
        ),
        size!("struct shared_info", SharedInfoCompat),
        off!(
            "struct shared_info",
            "evtchn_pending",
            SharedInfoCompat,
            evtchn_pending
        ),
        off!(
            "struct shared_info",
            "evtchn_mask",
            SharedInfoCompat,
            evtchn_mask
        ),
        off!(
            "struct shared_info",
            "wc_version",
            SharedInfoCompat,
            wc_version
        ),
        off!("struct shared_info", "wc_sec", SharedInfoCompat, wc_sec),
        off!("struct shared_info", "wc_nsec", SharedInfoCompat, wc_nsec),
        off!("struct shared_info", "arch", SharedInfoCompat, arch),
        size!("struct xen_memory_reservation", XenMemoryReservationCompat),
        off!(
            "struct xen_memory_reservation",
            "nr_extents",
            XenMemoryReservationCompat,
            nr_extents
        ),
        off!(
            "struct xen_memory_reservation",
            "domid",
            XenMemoryReservationCompat,
            domid
        ),
        size!("struct xen_add_to_physmap", XenAddToPhysmapCompat),
        off!(
            "struct xen_add_to_physmap",
            "idx",
            XenAddToPhysmapCompat,
            idx
        ),
        off!(
            "struct xen_add_to_physmap",
            "gpfn",
            XenAddToPhysmapCompat,
            gpfn
        ),
        size!("struct xen_memory_map", XenMemoryMapCompat),
        off!(
            "struct xen_memory_map",
            "buffer",
            XenMemoryMapCompat,
            buffer
        ),
        size!("struct xen_foreign_memory_map", XenForeignMemoryMapCompat),
        off!(
            "struct xen_foreign_memory_map",
            "map",
            XenForeignMemoryMapCompat,
            map
        ),
        size!("struct evtchn_status", EvtchnStatus),
        size!("struct evtchn_alloc_unbound", EvtchnAllocUnbound),
        size!("struct evtchn_bind_interdomain", EvtchnBindInterdomain),
        size!("struct evtchn_init_control", EvtchnInitControl),
        size!("struct grant_entry_v1", GrantEntryV1),
        size!("struct gnttab_setup_table", GnttabSetupTableCompat),
        off!(
            "struct gnttab_setup_table",
            "status",
            GnttabSetupTableCompat,
            status
        ),
        off!(
            "struct gnttab_setup_table",
            "frame_list",
            GnttabSetupTableCompat,
            frame_list
        ),
        size!("struct gnttab_query_size", GnttabQuerySize),
        size!("struct gnttab_get_version", GnttabGetVersion),
        size!("struct gnttab_copy", GnttabCopyCompat),
        off!("struct gnttab_copy", "dest", GnttabCopyCompat, dest),
        off!("struct gnttab_copy", "status", GnttabCopyCompat, status),
        size!("struct sched_poll", SchedPollCompat),
        off!("struct sched_poll", "timeout", SchedPollCompat, timeout_lo),
        size!("struct sched_shutdown", SchedShutdown),
        size!("struct vcpu_runstate_info", VcpuRunstateInfoCompat),
        off!(
            "struct vcpu_runstate_info",
            "state_entry_time",
            VcpuRunstateInfoCompat,
            state_entry_time
        ),
        off!(
            "struct vcpu_runstate_info",
            "time",
            VcpuRunstateInfoCompat,
            time
        ),
        size!(
            "struct vcpu_set_singleshot_timer",
            VcpuSetSingleshotTimerCompat
        ),
        size!("struct vcpu_register_vcpu_info", VcpuRegisterVcpuInfo),
        size!(
            "struct xen_platform_parameters",
            XenPlatformParametersCompat
        ),
        size!("struct xen_compile_info", XenCompileInfo),
        size!("struct xen_feature_info", XenFeatureInfo),
        size!("struct physdev_map_pirq", PhysdevMapPirqCompat),
        off!(
            "struct physdev_map_pirq",
            "table_base",
            PhysdevMapPirqCompat,
            table_base
        ),
        size!("struct xen_hvm_param", XenHvmParam),
        off!("struct xen_hvm_param", "value", XenHvmParam, value),
        size!("struct xencons_interface", XenconsInterface),
        size!("struct xenstore_domain_interface", XenstoreDomainInterface),
    ]
}

fn c_source(checks: &[Check]) -> String {
    let mut s = String::from("#include <stddef.h>\n#include <stdint.h>\n");
    for h in HEADERS {
        s.push_str(&format!("#include <{h}>\n"));
    }
    s.push_str("const unsigned int xkvm_vals[] = {\n");
    for c in checks {
        s.push_str(&format!("  (unsigned int){},\n", c.c));
    }
    s.push_str("};\n");
    s
}

/// Compiles `src` to assembly for `-m{bits}` and returns the array values.
fn compile(include: &Path, src: &str, bits: u32, dir: &Path) -> Result<Vec<u64>, String> {
    let c = dir.join(format!("layout{bits}.c"));
    let s = dir.join(format!("layout{bits}.s"));
    std::fs::write(&c, src).map_err(|e| e.to_string())?;
    let out = Command::new("gcc")
        .arg(format!("-m{bits}"))
        // Guests build against the latest interface (Linux does the same).
        .args(["-D__XEN_INTERFACE_VERSION__=__XEN_LATEST_INTERFACE_VERSION__"])
        .args(["-ffreestanding", "-O0", "-S", "-o"])
        .arg(&s)
        .arg("-I")
        .arg(include)
        .arg(&c)
        .output()
        .map_err(|e| format!("cannot run gcc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "gcc -m{bits} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let asm = std::fs::read_to_string(&s).map_err(|e| e.to_string())?;
    let body = asm
        .split_once("xkvm_vals:")
        .ok_or("no xkvm_vals in assembly")?
        .1;
    // The array's data: `.long N` lines (gcc may fold zeros into `.zero`),
    // up to the next directive that is not data.
    let mut vals = Vec::new();
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(v) = line.strip_prefix(".long") {
            vals.push(
                v.trim()
                    .parse::<i64>()
                    .map_err(|e| format!("{line}: {e}"))? as u32 as u64,
            );
        } else if let Some(n) = line.strip_prefix(".zero") {
            let n: usize = n.trim().parse().map_err(|e| format!("{line}: {e}"))?;
            vals.extend(std::iter::repeat_n(0, n / 4));
        } else if !vals.is_empty() {
            break;
        }
    }
    Ok(vals)
}

fn debs_root() -> Option<PathBuf> {
    if let Ok(r) = std::env::var("XKVM_DEBS") {
        let p = PathBuf::from(r);
        if p.join("usr/include/xen/xen.h").exists() {
            return Some(p);
        }
    }
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(top.join("scripts/debian-deps.sh"))
        .output()
        .ok()?;
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    root.join("usr/include/xen/xen.h").exists().then_some(root)
}

fn skip_or_fail(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("layout test cannot run: {why}");
    }
    eprintln!("SKIPPED layout test: {why}");
}

fn run(bits: u32, checks: Vec<Check>) {
    let Some(root) = debs_root() else {
        return skip_or_fail(
            "Debian libxen-dev headers not found (run scripts/debian-deps.sh or set XKVM_DEBS)",
        );
    };
    let dir = std::env::temp_dir().join(format!("xkvm-layout-{}-{bits}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let vals = match compile(&root.join("usr/include"), &c_source(&checks), bits, &dir) {
        Ok(v) => v,
        Err(e) if e.starts_with("cannot run gcc") => return skip_or_fail(&e),
        Err(e) => panic!("{e}"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        vals.len(),
        checks.len(),
        "parsed {} values for {} checks",
        vals.len(),
        checks.len()
    );
    let bad: Vec<String> = checks
        .iter()
        .zip(&vals)
        .filter(|(c, v)| c.rust != **v)
        .map(|(c, v)| format!("-m{bits}: {} is {v} in C, {} in Rust", c.c, c.rust))
        .collect();
    assert!(bad.is_empty(), "layout mismatches:\n{}", bad.join("\n"));
    eprintln!(
        "-m{bits}: {} sizes/offsets/constants match the headers",
        checks.len()
    );
}

#[test]
fn layouts_match_headers_64bit() {
    run(64, checks_64());
}

#[test]
fn compat_layouts_match_headers_32bit() {
    run(32, checks_32());
}

#[test]
fn e820_entry_is_packed_20_bytes() {
    // `struct e820entry` is Xen-internal (not in the public headers); the
    // BIOS format is 20 packed bytes.
    assert_eq!(size_of::<E820Entry>(), 20);
}
