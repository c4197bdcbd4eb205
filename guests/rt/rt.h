/*
 * The test-guest runtime: Xen discovery, hypercalls through the hypercall
 * page, console output, verdict lines and shutdown. A guest defines
 * `guest_main`; its name comes from -DGUEST_NAME. The runtime prints
 * "XKVM-TEST <name>: PASS" or "XKVM-TEST <name>: FAIL <reason>" when
 * guest_main returns, then powers off.
 */
#ifndef XKVM_GUEST_RT_H
#define XKVM_GUEST_RT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "xen.h"

extern const char guest_name[];
/* Provided by each guest. */
void guest_main(struct hvm_start_info *si);

/* Xen as found through CPUID. */
extern uint32_t xen_cpuid_base;

/* hypercallN(nr, args...): through the hypercall page, never vmcall. */
long hypercall(unsigned int nr, unsigned long a1, unsigned long a2, unsigned long a3,
               unsigned long a4, unsigned long a5);
#define hypercall0(nr) hypercall((nr), 0, 0, 0, 0, 0)
#define hypercall1(nr, a) hypercall((nr), (unsigned long)(a), 0, 0, 0, 0)
#define hypercall2(nr, a, b) hypercall((nr), (unsigned long)(a), (unsigned long)(b), 0, 0, 0)
#define hypercall3(nr, a, b, c) \
    hypercall((nr), (unsigned long)(a), (unsigned long)(b), (unsigned long)(c), 0, 0)
#define hypercall4(nr, a, b, c, d)                                                       \
    hypercall((nr), (unsigned long)(a), (unsigned long)(b), (unsigned long)(c),          \
              (unsigned long)(d), 0)
#define hypercall5(nr, a, b, c, d, e)                                                    \
    hypercall((nr), (unsigned long)(a), (unsigned long)(b), (unsigned long)(c),          \
              (unsigned long)(d), (unsigned long)(e))

void cpuid(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d);

/* Output. Everything goes to console_io (the domain's log); with
 * rt_mirror_to_ring set, also to the primary console ring if there is one. */
extern int rt_mirror_to_ring;
void console_io_write(const char *buf, size_t len);
void printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vprintf(const char *fmt, va_list ap);
void puts(const char *s); /* no newline added */

/* The primary console ring (HVM_PARAM_CONSOLE_PFN/EVTCHN). */
struct xencons_interface *console_ring(uint32_t *evtchn);
/* Writes all of buf to the ring and notifies; returns 0, or -1 without a ring
 * or when the backend does not drain it. */
int ring_write(const char *buf, size_t len);
/* Reads up to len bytes; returns how many (0 when none arrived in time). */
size_t ring_read(char *buf, size_t len, unsigned long spins);

/* Checks: a failed check prints its message and makes the verdict FAIL. */
void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Evaluates `got` and `want` once each: they are often hypercalls. */
#define CHECK_EQ(what, got, want)                                                      \
    do {                                                                               \
        long got_ = (long)(got), want_ = (long)(want);                                 \
        check(got_ == want_, "%s: got %ld, want %ld", (what), got_, want_);           \
    } while (0)
extern int rt_failures;

__attribute__((noreturn)) void shutdown(unsigned int reason);

/* HVM params through hvm_op; return the hypercall's result. */
long hvm_get_param(uint32_t index, uint64_t *value);
long hvm_set_param(uint32_t index, uint64_t value);

/* Freestanding libc bits (gcc may emit calls to the first four). */
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
const char *strstr(const char *h, const char *n);

/* A physical address as a pointer; NULL when it is beyond what the runtime maps. */
void *phys(uint64_t paddr);

#endif
