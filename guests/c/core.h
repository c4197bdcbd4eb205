/*
 * Shared bits of the core-services guests (evtchn.c, timers.c, smp.c):
 * the rest of Xen's ABI they need, an IDT with the event-channel upcall
 * handler, and the 2-level event scan. 64-bit guests only (interrupts
 * need iretq).
 */
#ifndef XKVM_GUEST_CORE_H
#define XKVM_GUEST_CORE_H

#include "rt.h"

#define __HYPERVISOR_set_timer_op 15
#define __HYPERVISOR_vcpu_op 24
#define __HYPERVISOR_physdev_op 33

#define XEN_ETIME 62
#define XEN_EOPNOTSUPP 95

#define SCHEDOP_poll 3
struct sched_poll {
    uint64_t ports;
    uint32_t nr_ports;
    uint32_t pad;
    uint64_t timeout;
};

#define EVTCHNOP_bind_interdomain 0
#define EVTCHNOP_bind_virq 1
#define EVTCHNOP_bind_ipi 7
#define EVTCHNOP_bind_vcpu 8
#define EVTCHNOP_unmask 9
#define EVTCHNOP_init_control 11
struct evtchn_bind_interdomain {
    uint16_t remote_dom, pad;
    uint32_t remote_port, local_port;
};
struct evtchn_bind_virq {
    uint32_t virq, vcpu, port;
};
struct evtchn_bind_ipi {
    uint32_t vcpu, port;
};
struct evtchn_port_only {
    uint32_t port;
};
struct evtchn_init_control {
    uint64_t control_gfn;
    uint32_t offset, vcpu;
    uint8_t link_bits, pad[7];
};
#define VIRQ_TIMER 0

#define HVMOP_get_time 10
#define HVMOP_set_evtchn_upcall_vector 23
struct xen_hvm_evtchn_upcall_vector {
    uint32_t vcpu;
    uint8_t vector;
};
#define HVM_CALLBACK_VECTOR(v) ((2ULL << 56) | (v))

#define VCPUOP_initialise 0
#define VCPUOP_up 1
#define VCPUOP_down 2
#define VCPUOP_is_up 3
#define VCPUOP_get_runstate_info 4
#define VCPUOP_set_periodic_timer 6
#define VCPUOP_stop_periodic_timer 7
#define VCPUOP_set_singleshot_timer 8
#define VCPUOP_stop_singleshot_timer 9
#define VCPU_SSHOTTMR_future 1
struct vcpu_set_singleshot_timer {
    uint64_t timeout_abs_ns;
    uint32_t flags, pad;
};
struct vcpu_set_periodic_timer {
    uint64_t period_ns;
};
struct vcpu_runstate_info {
    int32_t state;
    uint32_t pad;
    uint64_t state_entry_time;
    uint64_t time[4];
};
struct vcpu_hvm_x86_64 {
    uint64_t rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, rip, rflags;
    uint64_t cr0, cr3, cr4, efer;
};
struct vcpu_hvm_context {
    uint32_t mode, pad;
    union {
        struct vcpu_hvm_x86_64 x86_64;
        uint8_t raw[120];
    } cpu_regs;
};

/* The native shared_info, as far as these guests look. */
struct vcpu_info_native {
    uint8_t evtchn_upcall_pending;
    uint8_t evtchn_upcall_mask;
    uint8_t pad[6];
    uint64_t evtchn_pending_sel;
    uint64_t cr2, arch_pad;
    struct vcpu_time_info time;
};
struct shared_info_native {
    struct vcpu_info_native vcpu_info[32];
    uint64_t evtchn_pending[64];
    uint64_t evtchn_mask[64];
};

#define UPCALL_VECTOR 0xf3
#define SHINFO_GFN 0xfd000ULL

extern struct shared_info_native *shinfo;
/* Events the upcall handler found, per port (ports < 256 recorded). */
extern volatile uint32_t seen[256];
extern volatile unsigned long upcalls;

/* Maps shared_info, installs the IDT and enables the LAPIC; the callback
 * itself is set by the caller (HVM_PARAM_CALLBACK_IRQ or the per-vCPU
 * vector). */
void core_setup(void);
/* Guest system time (HVMOP_get_time). */
uint64_t now_ns(void);
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
long evtchn_op(unsigned int cmd, void *arg);
int alloc_unbound(uint16_t remote);
int send(uint32_t port);
/* Any hypercall: an exit, where an interrupt pending while IF was 0 is
 * taken on these machines (DESIGN.md). */
void exit_once(void);

#endif
