/*
 * The slice of Xen's public interface the test guests use. Numbers and
 * layouts follow xen/include/public (Debian libxen-dev); only what a guest
 * here needs, so the guests build without that package installed.
 */
#ifndef XKVM_GUEST_XEN_H
#define XKVM_GUEST_XEN_H

#include <stdint.h>

/* Hypercall numbers (xen.h). */
#define __HYPERVISOR_memory_op 12
#define __HYPERVISOR_xen_version 17
#define __HYPERVISOR_console_io 18
#define __HYPERVISOR_grant_table_op 20
#define __HYPERVISOR_sched_op 29
#define __HYPERVISOR_event_channel_op 32
#define __HYPERVISOR_hvm_op 34

#define DOMID_SELF 0x7FF0U

/* Error numbers (errno.h): hypercalls return them negated. */
#define XEN_EPERM 1
#define XEN_ENOENT 2
#define XEN_ESRCH 3
#define XEN_EFAULT 14
#define XEN_EBUSY 16
#define XEN_EEXIST 17
#define XEN_EINVAL 22
#define XEN_ENOSPC 28
#define XEN_ENOSYS 38

/* console_io */
#define CONSOLEIO_write 0
#define CONSOLEIO_read 1

/* sched_op */
#define SCHEDOP_yield 0
#define SCHEDOP_block 1
#define SCHEDOP_shutdown 2
#define SHUTDOWN_poweroff 0
#define SHUTDOWN_reboot 1
#define SHUTDOWN_suspend 2
#define SHUTDOWN_crash 3
#define SHUTDOWN_watchdog 4
#define SHUTDOWN_soft_reset 5
struct sched_shutdown {
    uint32_t reason;
};

/* xen_version (version.h) */
#define XENVER_version 0
#define XENVER_extraversion 1
#define XENVER_compile_info 2
#define XENVER_capabilities 3
#define XENVER_changeset 4
#define XENVER_platform_parameters 5
#define XENVER_get_features 6
#define XENVER_pagesize 7
#define XENVER_guest_handle 8
#define XENVER_commandline 9
#define XENVER_build_id 10
struct xen_feature_info {
    uint32_t submap_idx;
    uint32_t submap;
};
struct xen_compile_info {
    char compiler[64];
    char compile_by[16];
    char compile_domain[32];
    char compile_date[32];
};
struct xen_platform_parameters {
    unsigned long virt_start;
};
#define XENFEAT_writable_page_tables 0
#define XENFEAT_auto_translated_physmap 2
#define XENFEAT_supervisor_mode_kernel 3
#define XENFEAT_hvm_callback_vector 8
#define XENFEAT_hvm_safe_pvclock 9
#define XENFEAT_hvm_pirqs 10

/* memory_op (memory.h) */
#define XENMEM_increase_reservation 0
#define XENMEM_current_reservation 3
#define XENMEM_maximum_reservation 4
#define XENMEM_add_to_physmap 7
#define XENMEM_memory_map 9
#define XENMEM_machine_memory_map 10
#define XENMEM_set_memory_map 13
#define XENMAPSPACE_shared_info 0
#define XENMAPSPACE_grant_table 1
#define XENMAPIDX_grant_table_status 0x80000000U
struct xen_add_to_physmap {
    uint16_t domid;
    uint16_t size;
    uint32_t space;
    unsigned long idx;
    unsigned long gpfn;
};
struct xen_memory_map {
    uint32_t nr_entries;
    /* XEN_GUEST_HANDLE(void) is a pointer-sized slot, 8-byte aligned on x86_64 */
    unsigned long buffer;
};
struct xen_foreign_memory_map {
    uint16_t domid;
    struct xen_memory_map map;
};
struct e820entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
} __attribute__((packed));

/* hvm_op (hvm/hvm_op.h, hvm/params.h) */
#define HVMOP_set_param 0
#define HVMOP_get_param 1
struct xen_hvm_param {
    uint16_t domid;
    uint32_t index;
    uint64_t value;
} __attribute__((aligned(8)));
#define HVM_PARAM_CALLBACK_IRQ 0
#define HVM_PARAM_STORE_PFN 1
#define HVM_PARAM_STORE_EVTCHN 2
#define HVM_PARAM_TIMER_MODE 10
#define HVM_PARAM_CONSOLE_PFN 17
#define HVM_PARAM_CONSOLE_EVTCHN 18
#define HVM_NR_PARAMS 39

/* grant_table_op (grant_table.h) */
#define GNTTABOP_setup_table 2
#define GNTTABOP_query_size 6
#define GNTTABOP_set_version 8
#define GNTTABOP_get_version 10
#define GNTST_okay 0
#define GNTST_general_error (-1)
#define GNTST_bad_domain (-2)
#define GNTST_bad_virt_addr (-5)
#define GNTST_permission_denied (-8)
struct gnttab_setup_table {
    uint16_t dom;
    uint32_t nr_frames;
    int16_t status;
    unsigned long frame_list; /* XEN_GUEST_HANDLE(xen_pfn_t) */
};
struct gnttab_query_size {
    uint16_t dom;
    uint32_t nr_frames;
    uint32_t max_nr_frames;
    int16_t status;
};
struct gnttab_set_version {
    uint32_t version;
};
struct gnttab_get_version {
    uint16_t dom;
    uint16_t pad;
    uint32_t version;
};
struct grant_entry_v1 {
    uint16_t flags;
    uint16_t domid;
    uint32_t frame;
};
#define GTF_permit_access 1
#define GNTTAB_RESERVED_CONSOLE 0
#define GNTTAB_RESERVED_XENSTORE 1

/* event_channel_op (event_channel.h) */
#define EVTCHNOP_close 3
#define EVTCHNOP_send 4
#define EVTCHNOP_status 5
#define EVTCHNOP_alloc_unbound 6
struct evtchn_alloc_unbound {
    uint16_t dom, remote_dom;
    uint32_t port;
};
struct evtchn_send {
    uint32_t port;
};
struct evtchn_close {
    uint32_t port;
};
struct evtchn_status {
    uint16_t dom;
    uint32_t port;
    uint32_t status;
    uint32_t vcpu;
    union {
        struct {
            uint16_t dom;
        } unbound;
        struct {
            uint16_t dom;
            uint32_t port;
        } interdomain;
        uint32_t pirq;
        uint32_t virq;
    } u;
};
#define EVTCHNSTAT_closed 0
#define EVTCHNSTAT_unbound 1
#define EVTCHNSTAT_interdomain 2

/* shared_info (xen.h), x86 layout: only what the tests read. */
struct vcpu_time_info {
    uint32_t version;
    uint32_t pad0;
    uint64_t tsc_timestamp;
    uint64_t system_time;
    uint32_t tsc_to_system_mul;
    int8_t tsc_shift;
    int8_t flags;
    uint8_t pad1[2];
};

/* The primary console ring (io/console.h). */
struct xencons_interface {
    char in[1024];
    char out[2048];
    uint32_t in_cons, in_prod;
    uint32_t out_cons, out_prod;
};

/* PVH start of day (arch-x86/hvm/start_info.h). */
#define XEN_HVM_START_MAGIC_VALUE 0x336ec578U
struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;
    uint32_t memmap_entries;
    uint32_t reserved;
};
struct hvm_modlist_entry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
};
struct hvm_memmap_table_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};

#endif
