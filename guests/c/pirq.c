/*
 * PIRQs of an HVM guest with XENFEAT_hvm_pirqs: PHYSDEVOP_get_free_pirq,
 * map_pirq (GSI; MSI PIRQs are mapped by the device's first MSI write, as
 * Xen 4.17's hvm_inject_msi does), EVTCHNOP_bind_pirq, irq_status_query,
 * eoi and unmap_pirq, with Xen's error codes for bad arguments, and the
 * events an emulated device raises through them.
 *
 * Booted with VmConfig::emu_use_pirq (Xen's XEN_X86_EMU_USE_PIRQ, which
 * Xen gives HVM guests only: a test-only divergence for this PVH kernel)
 * and VmConfig::debug_hypercall, whose sub-commands 16/17 let the VMM
 * act as a device writing an MSI or driving a GSI (crates/vmm/src/debug_hook.rs).
 * Prints "pirq: nr_pirqs N gsi_events G msi_events M".
 */
#include "core.c"

#define PHYSDEVOP_irq_status_query 5
#define PHYSDEVOP_eoi 12
#define PHYSDEVOP_map_pirq 13
#define PHYSDEVOP_unmap_pirq 14
#define PHYSDEVOP_get_free_pirq 23
#define MAP_PIRQ_TYPE_MSI 0
#define MAP_PIRQ_TYPE_GSI 1
#define MAP_PIRQ_TYPE_MSI_SEG 3
#define XENIRQSTAT_needs_eoi 1
#define EVTCHNOP_bind_pirq 2

#define XKVM_DEBUG 127 /* crates/vmm/src/debug_hook.rs */
#define OP_DEVICE_MSI 16
#define OP_DEVICE_GSI 17

/* The emulated GSIs this test routes (>= 16: level, re-fired on EOI). */
#define GSI_A 20
#define GSI_B 21
#define GSI_UNMAPPED 22

struct physdev_map_pirq {
    uint16_t domid, pad;
    int32_t type, index, pirq, bus, devfn, entry_nr;
    uint32_t pad2;
    uint64_t table_base;
};
struct physdev_unmap_pirq {
    uint16_t domid, pad;
    int32_t pirq;
};
struct physdev_irq_status_query {
    uint32_t irq, flags;
};
struct physdev_get_free_pirq {
    int32_t type;
    uint32_t pirq;
};
struct evtchn_bind_pirq {
    uint32_t pirq, flags, port;
};

static uint16_t my_domid;

static long physdev(unsigned cmd, void *arg)
{
    return hypercall2(__HYPERVISOR_physdev_op, cmd, arg);
}

static long map_pirq(uint16_t domid, int type, int index, int *pirq)
{
    struct physdev_map_pirq m = {.domid = domid, .type = type, .index = index, .pirq = *pirq};
    long r = physdev(PHYSDEVOP_map_pirq, &m);
    *pirq = m.pirq;
    return r;
}

static long unmap_pirq(uint16_t domid, int pirq)
{
    struct physdev_unmap_pirq u = {.domid = domid, .pirq = pirq};
    return physdev(PHYSDEVOP_unmap_pirq, &u);
}

static long eoi(uint32_t irq)
{
    uint32_t e = irq;
    return physdev(PHYSDEVOP_eoi, &e);
}

static long status_query(uint32_t irq, uint32_t *flags)
{
    struct physdev_irq_status_query q = {.irq = irq, .flags = 0xdead};
    long r = physdev(PHYSDEVOP_irq_status_query, &q);
    *flags = q.flags;
    return r;
}

static long free_pirq(int type, uint32_t *pirq)
{
    struct physdev_get_free_pirq f = {.type = type, .pirq = 0xdead};
    long r = physdev(PHYSDEVOP_get_free_pirq, &f);
    *pirq = f.pirq;
    return r;
}

static long bind_pirq(uint32_t pirq, uint32_t *port)
{
    struct evtchn_bind_pirq b = {.pirq = pirq};
    long r = evtchn_op(EVTCHNOP_bind_pirq, &b);
    *port = b.port;
    return r;
}

static long device_gsi(uint32_t gsi, int level)
{
    return hypercall3(XKVM_DEBUG, OP_DEVICE_GSI, gsi, level);
}

/* Xen's HVM PIRQ MSI: vector 0, PIRQ in the destination id. */
static long device_msi_to_pirq(uint32_t pirq)
{
    uint64_t addr = 0xfee00000ULL | ((uint64_t)(pirq & 0xff) << 12) |
                    ((uint64_t)(pirq & ~0xffu) << 32);
    return hypercall3(XKVM_DEBUG, OP_DEVICE_MSI, addr, 0);
}

/* Exits (where pending interrupts are taken) until port `p` has seen `n`
 * events or 200 ms passed, then 20 ms more so extra events show up. */
static void wait_events(uint32_t p, uint32_t n)
{
    uint64_t t0 = now_ns();
    while (seen[p] < n && now_ns() - t0 < 200000000ULL)
        exit_once();
    uint64_t t1 = now_ns();
    while (now_ns() - t1 < 20000000ULL)
        exit_once();
}

static void features(void)
{
    struct xen_feature_info fi = {.submap_idx = 0};
    CHECK_EQ("get_features", hypercall2(__HYPERVISOR_xen_version, XENVER_get_features, &fi), 0);
    check(fi.submap & (1u << XENFEAT_hvm_pirqs), "XENFEAT_hvm_pirqs missing (%x)", fi.submap);
}

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    uint32_t a, b, c, d;
    cpuid(xen_cpuid_base + 4, 0, &a, &b, &c, &d);
    my_domid = (uint16_t)c;
    core_setup();
    features();
    long dbg = hypercall3(XKVM_DEBUG, 99, 0, 0);
    check(dbg == -XEN_EINVAL, "debug hypercall not enabled (%ld)", dbg);

    /* map_pirq needs the vector callback (is_hvm_pv_evtchn_domain). */
    int pirq = -1;
    CHECK_EQ("map_pirq before the vector callback",
             map_pirq(DOMID_SELF, MAP_PIRQ_TYPE_GSI, GSI_A, &pirq), -XEN_EINVAL);
    CHECK_EQ("vector callback", hvm_set_param(HVM_PARAM_CALLBACK_IRQ,
                                              HVM_CALLBACK_VECTOR(UPCALL_VECTOR)), 0);

    /* MSI PIRQs come from the top: the highest is nr_pirqs - 1. */
    uint32_t msi_pirq = 0, gsi_pirq = 0;
    CHECK_EQ("get_free_pirq MSI", free_pirq(MAP_PIRQ_TYPE_MSI, &msi_pirq), 0);
    uint32_t nr_pirqs = msi_pirq + 1;
    uint32_t next = 0;
    CHECK_EQ("get_free_pirq MSI again", free_pirq(MAP_PIRQ_TYPE_MSI, &next), 0);
    CHECK_EQ("next MSI pirq", next, msi_pirq - 1);

    /* Bad map_pirq arguments. */
    pirq = -1;
    CHECK_EQ("map_pirq MSI (GSI only for HVM)",
             map_pirq(DOMID_SELF, MAP_PIRQ_TYPE_MSI, -1, &pirq), -XEN_EINVAL);
    CHECK_EQ("map_pirq MSI_SEG", map_pirq(DOMID_SELF, MAP_PIRQ_TYPE_MSI_SEG, -1, &pirq),
             -XEN_EINVAL);
    CHECK_EQ("map_pirq type 9", map_pirq(DOMID_SELF, 9, GSI_A, &pirq), -XEN_EINVAL);
    CHECK_EQ("map_pirq GSI 48", map_pirq(DOMID_SELF, MAP_PIRQ_TYPE_GSI, 48, &pirq), -XEN_EINVAL);
    CHECK_EQ("map_pirq GSI -1", map_pirq(DOMID_SELF, MAP_PIRQ_TYPE_GSI, -1, &pirq), -XEN_EINVAL);
    pirq = (int)nr_pirqs;
    CHECK_EQ("map_pirq pirq nr_pirqs", map_pirq(DOMID_SELF, MAP_PIRQ_TYPE_GSI, GSI_A, &pirq),
             -XEN_EINVAL);
    pirq = -1;
    CHECK_EQ("map_pirq own domid (privileged path)",
             map_pirq(my_domid, MAP_PIRQ_TYPE_GSI, GSI_A, &pirq), -XEN_EPERM);
    CHECK_EQ("map_pirq dom0", map_pirq(0, MAP_PIRQ_TYPE_GSI, GSI_A, &pirq), -XEN_EPERM);
    CHECK_EQ("map_pirq unknown domain", map_pirq(77, MAP_PIRQ_TYPE_GSI, GSI_A, &pirq),
             -XEN_ESRCH);

    /* GSI A: the lowest free PIRQ from 16. */
    pirq = -1;
    CHECK_EQ("map_pirq GSI", map_pirq(DOMID_SELF, MAP_PIRQ_TYPE_GSI, GSI_A, &pirq), 0);
    CHECK_EQ("GSI pirq", pirq, 16);
    int pirq_a = pirq;
    /* GSI B onto a PIRQ reserved with get_free_pirq. */
    CHECK_EQ("get_free_pirq GSI", free_pirq(MAP_PIRQ_TYPE_GSI, &gsi_pirq), 0);
    CHECK_EQ("free GSI pirq", gsi_pirq, 17);
    pirq = (int)gsi_pirq;
    CHECK_EQ("map_pirq GSI onto reserved", map_pirq(DOMID_SELF, MAP_PIRQ_TYPE_GSI, GSI_B, &pirq),
             0);
    CHECK_EQ("reserved pirq kept", pirq, 17);

    /* irq_status_query. */
    uint32_t flags = 0;
    CHECK_EQ("status_query mapped", status_query(pirq_a, &flags), 0);
    CHECK_EQ("needs_eoi", flags, XENIRQSTAT_needs_eoi);
    CHECK_EQ("status_query unmapped", status_query(30, &flags), -XEN_EINVAL);
    CHECK_EQ("status_query reserved MSI pirq", status_query(msi_pirq, &flags), -XEN_EINVAL);
    CHECK_EQ("status_query nr_pirqs", status_query(nr_pirqs, &flags), -XEN_EINVAL);

    /* bind_pirq. */
    uint32_t port_a = 0, port_msi = 0, junk = 0;
    CHECK_EQ("bind_pirq GSI", bind_pirq(pirq_a, &port_a), 0);
    CHECK_EQ("bind_pirq again", bind_pirq(pirq_a, &junk), -XEN_EEXIST);
    CHECK_EQ("bind_pirq nr_pirqs", bind_pirq(nr_pirqs, &junk), -XEN_EINVAL);
    CHECK_EQ("bind_pirq MSI", bind_pirq(msi_pirq, &port_msi), 0);
    check(port_a < 256 && port_msi < 256 && port_a != port_msi, "ports %u %u", port_a, port_msi);

    sti();
    /* The device raises GSI A: an event on its PIRQ's channel. */
    CHECK_EQ("device GSI A high (as a PIRQ event)", device_gsi(GSI_A, 1), 1);
    wait_events(port_a, 1);
    CHECK_EQ("GSI event", seen[port_a], 1);
    /* EOI while the level GSI is still asserted: Xen sends it again. */
    CHECK_EQ("eoi asserted", eoi(pirq_a), 0);
    wait_events(port_a, 2);
    CHECK_EQ("re-fired after EOI", seen[port_a], 2);
    CHECK_EQ("device GSI A low", device_gsi(GSI_A, 0), 1);
    CHECK_EQ("eoi deasserted", eoi(pirq_a), 0);
    wait_events(port_a, 3);
    CHECK_EQ("no event after EOI of a low line", seen[port_a], 2);
    /* An unmapped GSI goes to the interrupt controller (masked pin). */
    CHECK_EQ("device GSI unmapped", device_gsi(GSI_UNMAPPED, 1), 0);
    CHECK_EQ("device GSI unmapped low", device_gsi(GSI_UNMAPPED, 0), 0);

    /* MSI with vector 0 and the PIRQ as destination: mapped on first use. */
    CHECK_EQ("device MSI to pirq", device_msi_to_pirq(msi_pirq), 1);
    wait_events(port_msi, 1);
    CHECK_EQ("MSI event", seen[port_msi], 1);
    CHECK_EQ("status_query MSI pirq now mapped", status_query(msi_pirq, &flags), 0);
    CHECK_EQ("eoi MSI", eoi(msi_pirq), 0);
    wait_events(port_msi, 2);
    CHECK_EQ("no MSI re-fire", seen[port_msi], 1);

    /* EOI bad arguments. */
    CHECK_EQ("eoi nr_pirqs", eoi(nr_pirqs), -XEN_EINVAL);
    CHECK_EQ("eoi unknown pirq", eoi(30), -XEN_EINVAL);
    CHECK_EQ("eoi reserved pirq", eoi(next), 0);

    /* unmap_pirq. */
    CHECK_EQ("unmap own domid (privileged path)", unmap_pirq(my_domid, pirq_a), -XEN_EPERM);
    CHECK_EQ("unmap unknown domain", unmap_pirq(77, pirq_a), -XEN_ESRCH);
    CHECK_EQ("unmap GSI pirq", unmap_pirq(DOMID_SELF, pirq_a), 0);
    CHECK_EQ("unmap again (nothing mapped: 0)", unmap_pirq(DOMID_SELF, pirq_a), 0);
    CHECK_EQ("unmap out of range (0)", unmap_pirq(DOMID_SELF, nr_pirqs + 5), 0);
    CHECK_EQ("status_query after unmap", status_query(pirq_a, &flags), -XEN_EINVAL);
    CHECK_EQ("device GSI A after unmap (normal path)", device_gsi(GSI_A, 1), 0);
    CHECK_EQ("device GSI A low", device_gsi(GSI_A, 0), 0);
    wait_events(port_a, 3);
    CHECK_EQ("no event after unmap", seen[port_a], 2);
    CHECK_EQ("unmap MSI pirq", unmap_pirq(DOMID_SELF, msi_pirq), 0);
    /* The next MSI maps it again, still bound to the same channel. */
    CHECK_EQ("device MSI after unmap", device_msi_to_pirq(msi_pirq), 1);
    wait_events(port_msi, 2);
    CHECK_EQ("MSI event after re-map", seen[port_msi], 2);
    cli();

    printf("pirq: nr_pirqs %u gsi_events %u msi_events %u\n", nr_pirqs, seen[port_a],
           seen[port_msi]);
}
