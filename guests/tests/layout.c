/*
 * Offsets and sizes of every struct in rt/xen.h, as one array in .rodata.
 * tests/layout.rs compiles this twice, once against our header and once
 * against Xen's public headers (Debian libxen-dev, -DXEN_PUBLIC_HEADERS), for
 * -m64 and -m32, and requires identical bytes.
 */
#include <stddef.h>
#include <stdint.h>
#ifdef XEN_PUBLIC_HEADERS
#include <xen/xen.h>
#include <xen/memory.h>
#include <xen/version.h>
#include <xen/hvm/hvm_op.h>
#include <xen/grant_table.h>
#include <xen/event_channel.h>
#include <xen/io/console.h>
#include <xen/arch-x86/hvm/start_info.h>
#define WC_VERSION offsetof(struct shared_info, wc_version)
#define VCPU_TIME offsetof(struct vcpu_info, time)
#else
#include "xen.h"
/* What hypercalls.c assumes about shared_info. */
#define WC_VERSION (2048 + 2 * 8 * sizeof(unsigned long) * sizeof(unsigned long))
#define VCPU_TIME 32
#endif

#define O(t, f) offsetof(struct t, f)
#define S(t) sizeof(struct t)

const size_t layout[] = {
    O(xen_add_to_physmap, size), O(xen_add_to_physmap, space), O(xen_add_to_physmap, idx),
    O(xen_add_to_physmap, gpfn), S(xen_add_to_physmap),
    O(xen_memory_map, buffer), S(xen_memory_map),
    O(xen_foreign_memory_map, map), S(xen_foreign_memory_map),
    O(xen_hvm_param, index), O(xen_hvm_param, value), S(xen_hvm_param),
    O(gnttab_setup_table, nr_frames), O(gnttab_setup_table, status),
    O(gnttab_setup_table, frame_list), S(gnttab_setup_table),
    O(gnttab_query_size, nr_frames), O(gnttab_query_size, max_nr_frames),
    O(gnttab_query_size, status), S(gnttab_query_size),
    O(gnttab_get_version, version), S(gnttab_get_version), S(gnttab_set_version),
    O(grant_entry_v1, domid), O(grant_entry_v1, frame), S(grant_entry_v1),
    O(evtchn_alloc_unbound, remote_dom), O(evtchn_alloc_unbound, port),
    O(evtchn_status, port), O(evtchn_status, status), O(evtchn_status, vcpu),
    O(evtchn_status, u), O(evtchn_status, u.interdomain.port), S(evtchn_status),
    O(xen_feature_info, submap), S(xen_compile_info),
    O(vcpu_time_info, tsc_timestamp), O(vcpu_time_info, system_time),
    O(vcpu_time_info, tsc_to_system_mul), O(vcpu_time_info, tsc_shift), S(vcpu_time_info),
    O(xencons_interface, out), O(xencons_interface, in_cons), O(xencons_interface, in_prod),
    O(xencons_interface, out_cons), O(xencons_interface, out_prod),
    O(hvm_start_info, nr_modules), O(hvm_start_info, modlist_paddr),
    O(hvm_start_info, cmdline_paddr), O(hvm_start_info, rsdp_paddr),
    O(hvm_start_info, memmap_paddr), O(hvm_start_info, memmap_entries), S(hvm_start_info),
    O(hvm_modlist_entry, cmdline_paddr), S(hvm_modlist_entry),
    O(hvm_memmap_table_entry, type), S(hvm_memmap_table_entry),
    WC_VERSION, VCPU_TIME,
};
