/*
 * The hypercalls of issue 4, each with good and bad arguments, compared with
 * the error codes Xen itself returns to an unprivileged HVM/PVH domU.
 * Prints one "rc" line per call, values the test compares with the config:
 *   xen_version <major>.<minor>
 *   current_reservation <pages> maximum_reservation <pages>
 *   grant max_nr_frames <n>
 *   hvm param <index> = 0x<value>
 *   console evtchn status <s> / store evtchn status <s>
 */
#include "rt.h"

/* A GVA no mapping reaches: beyond the 64-bit runtime's 4 GiB identity map;
 * with paging off (32-bit), a GPA in the MMIO hole with nothing behind it. */
#ifdef __x86_64__
#define BAD_PTR ((void *)0x10000000000UL)
#else
#define BAD_PTR ((void *)0xF0000000UL)
#endif

/* A GFN with no RAM behind it, in the MMIO hole (libxl's default hole starts
 * at 0xF0000000) and clear of the ACPI tables at 0xFC000000. */
#define SHINFO_GFN 0xF1000UL
#define GNTTAB_GFN 0xF1010UL

static long expect(const char *what, long rc, long want)
{
    printf("%s: rc %ld\n", what, rc);
    check(rc == want, "%s: rc %ld, Xen returns %ld", what, rc, want);
    return rc;
}

static int has_nul(const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!buf[i])
            return 1;
    return 0;
}

static long xen_version(int cmd, void *arg)
{
    return hypercall2(__HYPERVISOR_xen_version, cmd, arg);
}

static void test_xen_version(void)
{
    static char buf[1024];
    struct xen_feature_info fi = { 0 };
    struct xen_compile_info ci;
    long v = xen_version(XENVER_version, NULL);
    printf("xen_version %ld.%ld\n", v >> 16, v & 0xffff);
    check(v > 0 && (v >> 16) >= 3, "XENVER_version 0x%lx", v);

    memset(buf, 0xff, sizeof(buf));
    expect("XENVER_extraversion", xen_version(XENVER_extraversion, buf), 0);
    check(has_nul(buf, 16), "extraversion not NUL-terminated within 16 bytes");
    printf("extraversion '%s'\n", buf);
    expect("XENVER_extraversion bad pointer", xen_version(XENVER_extraversion, BAD_PTR),
           -XEN_EFAULT);
    expect("XENVER_compile_info", xen_version(XENVER_compile_info, &ci), 0);
    expect("XENVER_capabilities", xen_version(XENVER_capabilities, buf), 0);
    printf("capabilities '%s'\n", buf);
    check(strstr(buf, "hvm-3.0-x86") != NULL, "capabilities '%s' lack hvm-3.0-x86", buf);
    expect("XENVER_changeset", xen_version(XENVER_changeset, buf), 0);
    expect("XENVER_platform_parameters", xen_version(XENVER_platform_parameters, buf), 0);
    expect("XENVER_get_features", xen_version(XENVER_get_features, &fi), 0);
    printf("features submap 0 = 0x%x\n", fi.submap);
    check(fi.submap & (1U << XENFEAT_auto_translated_physmap), "no auto_translated_physmap");
    check(fi.submap & (1U << XENFEAT_hvm_callback_vector), "no hvm_callback_vector");
    check(fi.submap & (1U << XENFEAT_hvm_safe_pvclock), "no hvm_safe_pvclock");
    fi.submap_idx = 1;
    expect("XENVER_get_features submap 1", xen_version(XENVER_get_features, &fi), -XEN_EINVAL);
    expect("XENVER_get_features bad pointer", xen_version(XENVER_get_features, BAD_PTR),
           -XEN_EFAULT);
    expect("XENVER_pagesize", xen_version(XENVER_pagesize, NULL), 4096);
    expect("XENVER_pagesize non-null arg", xen_version(XENVER_pagesize, buf), -XEN_EINVAL);
    expect("XENVER_guest_handle", xen_version(XENVER_guest_handle, buf), 0);
    /* Xen's commandline is not for a domU: it gets "<denied>". */
    expect("XENVER_commandline", xen_version(XENVER_commandline, buf), 0);
    printf("commandline '%s'\n", buf);
    expect("XENVER_build_id", xen_version(XENVER_build_id, NULL), -XEN_EPERM);
    expect("xen_version bad sub-op", xen_version(99, NULL), -XEN_ENOSYS);
}

static void test_console_io(void)
{
    static const char msg[] = "console_io write from the hypercalls guest\n";
    expect("CONSOLEIO_write",
           hypercall3(__HYPERVISOR_console_io, CONSOLEIO_write, sizeof(msg) - 1, msg), 0);
    expect("CONSOLEIO_write bad pointer",
           hypercall3(__HYPERVISOR_console_io, CONSOLEIO_write, 8, BAD_PTR), -XEN_EFAULT);
    /* xkvm lets the domain use console_io as Xen lets a console domain
     * (`d->is_console`, XSM_HOOK for every sub-op): reading finds no input
     * and an unknown sub-op is -ENOSYS. (A plain domU on a debug Xen would
     * get -EPERM for both.) */
    expect("CONSOLEIO_read", hypercall3(__HYPERVISOR_console_io, CONSOLEIO_read, 0, NULL), 0);
    expect("console_io bad sub-op", hypercall3(__HYPERVISOR_console_io, 99, 0, NULL),
           -XEN_ENOSYS);
}

static void test_sched_op(void)
{
    expect("SCHEDOP_yield", hypercall2(__HYPERVISOR_sched_op, SCHEDOP_yield, 0), 0);
    expect("SCHEDOP_shutdown bad pointer",
           hypercall2(__HYPERVISOR_sched_op, SCHEDOP_shutdown, BAD_PTR), -XEN_EFAULT);
    expect("sched_op bad sub-op", hypercall2(__HYPERVISOR_sched_op, 99, 0), -XEN_ENOSYS);
}

static void test_memory_op(struct hvm_start_info *si)
{
    static struct e820entry map[64];
    struct xen_memory_map mm = { .nr_entries = 64, .buffer = (unsigned long)map };
    uint16_t self = DOMID_SELF, nobody = 0x7FF4; /* DOMID_INVALID */
    long cur, max;

    cur = hypercall2(__HYPERVISOR_memory_op, XENMEM_current_reservation, &self);
    max = hypercall2(__HYPERVISOR_memory_op, XENMEM_maximum_reservation, &self);
    printf("current_reservation %ld maximum_reservation %ld\n", cur, max);
    check(cur > 0 && max >= cur, "reservations %ld/%ld", cur, max);
    expect("XENMEM_current_reservation DOMID_INVALID",
           hypercall2(__HYPERVISOR_memory_op, XENMEM_current_reservation, &nobody),
           -XEN_ESRCH);
    expect("XENMEM_maximum_reservation bad pointer",
           hypercall2(__HYPERVISOR_memory_op, XENMEM_maximum_reservation, BAD_PTR),
           -XEN_EFAULT);

    expect("XENMEM_memory_map", hypercall2(__HYPERVISOR_memory_op, XENMEM_memory_map, &mm), 0);
    printf("memory_map entries %u\n", mm.nr_entries);
    if (si->version >= 1 && mm.nr_entries == si->memmap_entries) {
        const struct hvm_memmap_table_entry *sm = phys(si->memmap_paddr);
        for (uint32_t i = 0; sm && i < mm.nr_entries; i++)
            check(map[i].addr == sm[i].addr && map[i].size == sm[i].size &&
                      map[i].type == sm[i].type,
                  "memory_map entry %u differs from the start info's", i);
    } else {
        check(0, "memory_map has %u entries, start info %u", mm.nr_entries, si->memmap_entries);
    }
    mm.nr_entries = 1;
    expect("XENMEM_memory_map one entry",
           hypercall2(__HYPERVISOR_memory_op, XENMEM_memory_map, &mm), 0);
    CHECK_EQ("memory_map truncated nr_entries", mm.nr_entries, 1);
    mm.buffer = (unsigned long)BAD_PTR;
    expect("XENMEM_memory_map bad buffer",
           hypercall2(__HYPERVISOR_memory_op, XENMEM_memory_map, &mm), -XEN_EFAULT);
    expect("memory_op bad sub-op", hypercall2(__HYPERVISOR_memory_op, 99, NULL), -XEN_ENOSYS);
}

static void test_set_memory_map(void)
{
    static struct e820entry map[64];
    struct xen_memory_map mm = { .nr_entries = 64, .buffer = (unsigned long)map };
    struct xen_foreign_memory_map fm = { .domid = DOMID_SELF };

    /* A domain may set its own map (XSM_TARGET); set it to what it is. */
    hypercall2(__HYPERVISOR_memory_op, XENMEM_memory_map, &mm);
    fm.map = mm;
    expect("XENMEM_set_memory_map", hypercall2(__HYPERVISOR_memory_op, XENMEM_set_memory_map,
                                               &fm), 0);
    mm.nr_entries = 64;
    hypercall2(__HYPERVISOR_memory_op, XENMEM_memory_map, &mm);
    CHECK_EQ("memory_map entries after set_memory_map", mm.nr_entries, fm.map.nr_entries);
    fm.map.nr_entries = 0x10000; /* beyond E820MAX */
    expect("XENMEM_set_memory_map too many entries",
           hypercall2(__HYPERVISOR_memory_op, XENMEM_set_memory_map, &fm), -XEN_EINVAL);
    fm.map.nr_entries = 1;
    fm.map.buffer = (unsigned long)BAD_PTR;
    expect("XENMEM_set_memory_map bad buffer",
           hypercall2(__HYPERVISOR_memory_op, XENMEM_set_memory_map, &fm), -XEN_EFAULT);
    fm.domid = 0x7FF4;
    expect("XENMEM_set_memory_map DOMID_INVALID",
           hypercall2(__HYPERVISOR_memory_op, XENMEM_set_memory_map, &fm), -XEN_ESRCH);
    expect("XENMEM_set_memory_map bad pointer",
           hypercall2(__HYPERVISOR_memory_op, XENMEM_set_memory_map, BAD_PTR), -XEN_EFAULT);
}

static long add_to_physmap(uint32_t space, unsigned long idx, unsigned long gfn)
{
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF, .space = space, .idx = idx, .gpfn = gfn
    };
    return hypercall2(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, &xatp);
}

/* A RAM page for shared_info to move into: Linux puts it in RAM like this. */
static uint8_t shinfo_ram[4096] __attribute__((aligned(4096)));

static void test_shared_info(void)
{
    /* shared_info layout (xen.h): 32 vcpu_info of 64 bytes, then the two
     * event channel bitmaps (as many longs as a long has bits), then the
     * wallclock. */
    const unsigned long bitmap = 8 * sizeof(unsigned long) * sizeof(unsigned long);
    const unsigned long wc_off = 2048 + 2 * bitmap;
    /* The last word of evtchn_mask: guest-writable, and no port we use. */
    const unsigned long mask_last = 2048 + 2 * bitmap - sizeof(unsigned long);
    volatile uint8_t *sh = (volatile uint8_t *)(SHINFO_GFN << 12);
    volatile uint8_t *sh_ram = shinfo_ram;
    volatile struct vcpu_time_info *t = (volatile struct vcpu_time_info *)(sh + 32);
    uint32_t wc_version, wc_sec, ver;
    uint64_t t1, t2;

    expect("add_to_physmap shared_info",
           add_to_physmap(XENMAPSPACE_shared_info, 0, SHINFO_GFN), 0);
    expect("add_to_physmap shared_info idx 1",
           add_to_physmap(XENMAPSPACE_shared_info, 1, SHINFO_GFN), -XEN_EINVAL);
    expect("add_to_physmap bad space", add_to_physmap(99, 0, SHINFO_GFN), -XEN_EINVAL);

    wc_version = *(volatile uint32_t *)(sh + wc_off);
    wc_sec = *(volatile uint32_t *)(sh + wc_off + 4);
    printf("wallclock version %u sec %u\n", wc_version, wc_sec);
    check(!(wc_version & 1) && wc_sec > 1600000000U, "no valid wallclock (sec %u)", wc_sec);

    do {
        ver = t->version;
        __asm__ volatile("" ::: "memory");
        t1 = t->system_time;
        __asm__ volatile("" ::: "memory");
    } while ((ver & 1) || ver != t->version);
    hypercall2(__HYPERVISOR_sched_op, SCHEDOP_yield, 0);
    t2 = t->system_time;
    printf("pvclock version %u mul 0x%x shift %d system_time 0x%llx\n", ver,
           t->tsc_to_system_mul, t->tsc_shift, (unsigned long long)t1);
    check(t->tsc_to_system_mul != 0, "vcpu_info[0].time has no tsc_to_system_mul");
    check(t2 >= t1, "pvclock system_time went backwards");

    /* Moving shared_info onto a RAM page keeps its contents. */
    *(volatile unsigned long *)(sh + mask_last) = 0x5a5a5a5aUL;
    expect("add_to_physmap shared_info into RAM",
           add_to_physmap(XENMAPSPACE_shared_info, 0, (uintptr_t)shinfo_ram >> 12), 0);
    check(*(volatile unsigned long *)(sh_ram + mask_last) == 0x5a5a5a5aUL,
          "shared_info lost its contents when moved into RAM");
    check(*(volatile uint32_t *)(sh_ram + wc_off + 4) == wc_sec,
          "shared_info in RAM has another wallclock");
    *(volatile unsigned long *)(sh_ram + mask_last) = 0;
}

static void test_grant_frames(uint32_t max_frames)
{
    volatile struct grant_entry_v1 *g = (volatile struct grant_entry_v1 *)(GNTTAB_GFN << 12);
    uint64_t console_pfn = 0, store_pfn = 0;

    expect("add_to_physmap grant_table 0",
           add_to_physmap(XENMAPSPACE_grant_table, 0, GNTTAB_GFN), 0);
    expect("add_to_physmap grant_table max_frames",
           add_to_physmap(XENMAPSPACE_grant_table, max_frames, GNTTAB_GFN + 1), -XEN_EINVAL);
    expect("add_to_physmap grant_table v1 status frame",
           add_to_physmap(XENMAPSPACE_grant_table, XENMAPIDX_grant_table_status, GNTTAB_GFN + 1),
           -XEN_EINVAL);

    hvm_get_param(HVM_PARAM_CONSOLE_PFN, &console_pfn);
    hvm_get_param(HVM_PARAM_STORE_PFN, &store_pfn);
    printf("grant 0 flags 0x%x domid %u frame 0x%x\n", g[0].flags, g[0].domid, g[0].frame);
    printf("grant 1 flags 0x%x domid %u frame 0x%x\n", g[1].flags, g[1].domid, g[1].frame);
    check(g[GNTTAB_RESERVED_CONSOLE].flags == GTF_permit_access &&
              g[GNTTAB_RESERVED_CONSOLE].domid == 0 &&
              g[GNTTAB_RESERVED_CONSOLE].frame == console_pfn,
          "grant entry 0 is not the console page for dom0");
    check(g[GNTTAB_RESERVED_XENSTORE].flags == GTF_permit_access &&
              g[GNTTAB_RESERVED_XENSTORE].domid == 0 &&
              g[GNTTAB_RESERVED_XENSTORE].frame == store_pfn,
          "grant entry 1 is not the xenstore page for dom0");
}

static void test_hvm_op(void)
{
    static const uint32_t readable[] = { HVM_PARAM_CALLBACK_IRQ, HVM_PARAM_STORE_PFN,
                                         HVM_PARAM_STORE_EVTCHN, HVM_PARAM_CONSOLE_PFN,
                                         HVM_PARAM_CONSOLE_EVTCHN };
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = HVM_NR_PARAMS };
    uint64_t v = 0;

    for (unsigned i = 0; i < sizeof(readable) / sizeof(readable[0]); i++) {
        long rc = hvm_get_param(readable[i], &v);
        printf("hvm param %u = 0x%llx\n", readable[i], (unsigned long long)v);
        check(rc == 0, "HVMOP_get_param %u: rc %ld", readable[i], rc);
    }
    {
        long rc = hvm_get_param(HVM_PARAM_TIMER_MODE, &v);
        printf("hvm param timer_mode rc %ld value %llu\n", rc, (unsigned long long)v);
    }
    expect("HVMOP_set_param CALLBACK_IRQ none", hvm_set_param(HVM_PARAM_CALLBACK_IRQ, 0), 0);
    expect("HVMOP_get_param index out of range",
           hypercall2(__HYPERVISOR_hvm_op, HVMOP_get_param, &p), -XEN_EINVAL);
    expect("HVMOP_set_param index out of range",
           hypercall2(__HYPERVISOR_hvm_op, HVMOP_set_param, &p), -XEN_EINVAL);
    p.index = HVM_PARAM_STORE_PFN;
    p.domid = 0x7FF4; /* DOMID_INVALID */
    expect("HVMOP_get_param DOMID_INVALID",
           hypercall2(__HYPERVISOR_hvm_op, HVMOP_get_param, &p), -XEN_ESRCH);
    expect("HVMOP_get_param bad pointer",
           hypercall2(__HYPERVISOR_hvm_op, HVMOP_get_param, BAD_PTR), -XEN_EFAULT);
    expect("hvm_op bad sub-op", hypercall2(__HYPERVISOR_hvm_op, 99, NULL), -XEN_ENOSYS);
}

static uint32_t test_grant_table_op(void)
{
    struct gnttab_query_size qs = { .dom = DOMID_SELF };
    struct gnttab_get_version gv = { .dom = DOMID_SELF };
    struct gnttab_set_version sv = { .version = 1 };
    static unsigned long frames[4];
    struct gnttab_setup_table st = { .dom = DOMID_SELF, .nr_frames = 1,
                                     .frame_list = (unsigned long)frames };

    expect("GNTTABOP_query_size", hypercall3(__HYPERVISOR_grant_table_op, GNTTABOP_query_size,
                                             &qs, 1), 0);
    CHECK_EQ("query_size status", qs.status, GNTST_okay);
    printf("grant nr_frames %u max_nr_frames %u\n", qs.nr_frames, qs.max_nr_frames);
    expect("GNTTABOP_query_size count 2",
           hypercall3(__HYPERVISOR_grant_table_op, GNTTABOP_query_size, &qs, 2), -XEN_EINVAL);
    qs.dom = 0x7FF4;
    expect("GNTTABOP_query_size DOMID_INVALID",
           hypercall3(__HYPERVISOR_grant_table_op, GNTTABOP_query_size, &qs, 1), 0);
    CHECK_EQ("query_size DOMID_INVALID status", qs.status, GNTST_bad_domain);

    expect("GNTTABOP_get_version", hypercall3(__HYPERVISOR_grant_table_op,
                                              GNTTABOP_get_version, &gv, 1), 0);
    CHECK_EQ("grant table version", gv.version, 1);
    expect("GNTTABOP_set_version 1", hypercall3(__HYPERVISOR_grant_table_op,
                                                GNTTABOP_set_version, &sv, 1), 0);
    CHECK_EQ("set_version returns version", sv.version, 1);
    sv.version = 3;
    expect("GNTTABOP_set_version 3", hypercall3(__HYPERVISOR_grant_table_op,
                                                GNTTABOP_set_version, &sv, 1), -XEN_EINVAL);

    expect("GNTTABOP_setup_table", hypercall3(__HYPERVISOR_grant_table_op,
                                              GNTTABOP_setup_table, &st, 1), 0);
    CHECK_EQ("setup_table status", st.status, GNTST_okay);
    printf("setup_table frame 0 = 0x%lx\n", frames[0]);
    st.nr_frames = qs.max_nr_frames + 1;
    expect("GNTTABOP_setup_table too many frames",
           hypercall3(__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, &st, 1), 0);
    CHECK_EQ("setup_table too many frames status", st.status, GNTST_general_error);
    expect("GNTTABOP_setup_table bad pointer",
           hypercall3(__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, BAD_PTR, 1),
           -XEN_EFAULT);
    expect("grant_table_op bad sub-op",
           hypercall3(__HYPERVISOR_grant_table_op, 99, &qs, 1), -XEN_ENOSYS);
    return qs.max_nr_frames;
}

static long evtchn(int cmd, void *arg)
{
    return hypercall2(__HYPERVISOR_event_channel_op, cmd, arg);
}

static void test_event_channel_op(void)
{
    struct evtchn_alloc_unbound au = { .dom = DOMID_SELF, .remote_dom = 0 };
    struct evtchn_status st = { .dom = DOMID_SELF };
    struct evtchn_send send;
    struct evtchn_close cl;
    uint64_t port = 0;

    expect("EVTCHNOP_alloc_unbound", evtchn(EVTCHNOP_alloc_unbound, &au), 0);
    printf("alloc_unbound port %u\n", au.port);
    check(au.port != 0, "alloc_unbound gave port 0");
    st.port = au.port;
    expect("EVTCHNOP_status unbound", evtchn(EVTCHNOP_status, &st), 0);
    CHECK_EQ("status of the new port", st.status, EVTCHNSTAT_unbound);
    CHECK_EQ("unbound remote dom", st.u.unbound.dom, 0);
    send.port = au.port;
    expect("EVTCHNOP_send unbound", evtchn(EVTCHNOP_send, &send), 0);
    cl.port = au.port;
    expect("EVTCHNOP_close", evtchn(EVTCHNOP_close, &cl), 0);
    expect("EVTCHNOP_status closed", evtchn(EVTCHNOP_status, &st), 0);
    CHECK_EQ("status after close", st.status, EVTCHNSTAT_closed);
    expect("EVTCHNOP_close again", evtchn(EVTCHNOP_close, &cl), -XEN_EINVAL);
    expect("EVTCHNOP_send closed", evtchn(EVTCHNOP_send, &send), -XEN_EINVAL);
    cl.port = 0;
    expect("EVTCHNOP_close port 0", evtchn(EVTCHNOP_close, &cl), -XEN_EINVAL);
    st.port = 1U << 20;
    expect("EVTCHNOP_status port out of range", evtchn(EVTCHNOP_status, &st), -XEN_EINVAL);
    send.port = 1U << 20;
    expect("EVTCHNOP_send port out of range", evtchn(EVTCHNOP_send, &send), -XEN_EINVAL);
    st.dom = 0x7FF4;
    st.port = 1;
    expect("EVTCHNOP_status DOMID_INVALID", evtchn(EVTCHNOP_status, &st), -XEN_ESRCH);
    au.dom = 0x7FF4;
    expect("EVTCHNOP_alloc_unbound DOMID_INVALID", evtchn(EVTCHNOP_alloc_unbound, &au),
           -XEN_ESRCH);
    expect("EVTCHNOP_alloc_unbound bad pointer", evtchn(EVTCHNOP_alloc_unbound, BAD_PTR),
           -XEN_EFAULT);
    expect("event_channel_op bad sub-op", evtchn(99, &st), -XEN_ENOSYS);

    if (hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN, &port) == 0 && port) {
        st.dom = DOMID_SELF;
        st.port = (uint32_t)port;
        evtchn(EVTCHNOP_status, &st);
        printf("console evtchn %u status %u remote dom %u\n", st.port, st.status,
               st.u.interdomain.dom);
    }
    if (hvm_get_param(HVM_PARAM_STORE_EVTCHN, &port) == 0 && port) {
        st.dom = DOMID_SELF;
        st.port = (uint32_t)port;
        evtchn(EVTCHNOP_status, &st);
        printf("store evtchn %u status %u remote dom %u\n", st.port, st.status,
               st.u.interdomain.dom);
    }
}

void guest_main(struct hvm_start_info *si)
{
    uint32_t max_frames;
    test_xen_version();
    test_console_io();
    test_sched_op();
    test_memory_op(si);
    test_set_memory_map();
    test_hvm_op();
    max_frames = test_grant_table_op();
    test_event_channel_op();
    test_shared_info();
    test_grant_frames(max_frames);
    expect("unknown hypercall 100", hypercall0(100), -XEN_ENOSYS);
}
