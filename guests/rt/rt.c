/* The test-guest runtime; see rt.h. */
#include "rt.h"

/* GUEST_NAME comes from the build (build.rs), so one source can make several guests. */
const char guest_name[] = GUEST_NAME;
uint32_t xen_cpuid_base;
int rt_mirror_to_ring;
int rt_failures;
static char first_failure[128];

static uint8_t hypercall_page[4096] __attribute__((aligned(4096)));

long hypercall(unsigned int nr, unsigned long a1, unsigned long a2, unsigned long a3,
               unsigned long a4, unsigned long a5)
{
    long ret;
    void *stub = hypercall_page + nr * 32;
#ifdef __x86_64__
    register unsigned long r10 __asm__("r10") = a4;
    register unsigned long r8 __asm__("r8") = a5;
    __asm__ volatile("call *%%rax"
                     : "=a"(ret), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8)
                     : "0"(stub)
                     : "memory", "cc", "rcx", "r9", "r11");
#else
    __asm__ volatile("call *%%eax"
                     : "=a"(ret), "+b"(a1), "+c"(a2), "+d"(a3), "+S"(a4), "+D"(a5)
                     : "0"(stub)
                     : "memory", "cc");
#endif
    return ret;
}

void cpuid(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "0"(leaf), "2"(sub));
}

static void wrmsr(uint32_t msr, uint64_t value)
{
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)));
}

static void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port));
}

/* Scan 0x40000000..0x40010000 by 0x100 for "XenVMMXenVMM", as Linux does,
 * so a Xen behind Viridian leaves (0x40000100) is found too. */
static uint32_t find_xen(void)
{
    for (uint32_t base = 0x40000000; base < 0x40010000; base += 0x100) {
        uint32_t a, b, c, d;
        cpuid(base, 0, &a, &b, &c, &d);
        if (b == 0x566e6558 && c == 0x65584d4d && d == 0x4d4d566e && a >= base + 2)
            return base;
    }
    return 0;
}

void console_io_write(const char *buf, size_t len)
{
    hypercall3(__HYPERVISOR_console_io, CONSOLEIO_write, len, buf);
}

/* ---- primary console ring ---- */

static struct xencons_interface *ring;
static uint32_t ring_port;
static int ring_probed;

struct xencons_interface *console_ring(uint32_t *evtchn)
{
    if (!ring_probed) {
        uint64_t pfn = 0, port = 0;
        ring_probed = 1;
        if (hvm_get_param(HVM_PARAM_CONSOLE_PFN, &pfn) == 0 && pfn != 0 &&
            hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN, &port) == 0) {
            ring = phys(pfn << 12);
            ring_port = (uint32_t)port;
        }
    }
    if (evtchn)
        *evtchn = ring_port;
    return ring;
}

static void notify_ring(void)
{
    struct evtchn_send send = { .port = ring_port };
    hypercall2(__HYPERVISOR_event_channel_op, EVTCHNOP_send, &send);
}

int ring_write(const char *buf, size_t len)
{
    struct xencons_interface *r = console_ring(NULL);
    unsigned long stalls = 0;
    if (!r)
        return -1;
    while (len) {
        uint32_t cons = __atomic_load_n(&r->out_cons, __ATOMIC_ACQUIRE);
        uint32_t prod = r->out_prod;
        if (prod - cons >= sizeof(r->out)) {
            notify_ring();
            hypercall2(__HYPERVISOR_sched_op, SCHEDOP_yield, 0);
            if (++stalls > 1000)
                return -1;
            continue;
        }
        while (len && prod - cons < sizeof(r->out)) {
            r->out[prod % sizeof(r->out)] = *buf++;
            prod++;
            len--;
        }
        __atomic_store_n(&r->out_prod, prod, __ATOMIC_RELEASE);
        notify_ring();
    }
    return 0;
}

size_t ring_read(char *buf, size_t len, unsigned long spins)
{
    struct xencons_interface *r = console_ring(NULL);
    size_t got = 0;
    if (!r)
        return 0;
    for (unsigned long i = 0; i < spins && got < len; i++) {
        uint32_t prod = __atomic_load_n(&r->in_prod, __ATOMIC_ACQUIRE);
        uint32_t cons = r->in_cons;
        if (prod == cons) {
            hypercall2(__HYPERVISOR_sched_op, SCHEDOP_yield, 0);
            continue;
        }
        while (cons != prod && got < len)
            buf[got++] = r->in[cons++ % sizeof(r->in)];
        __atomic_store_n(&r->in_cons, cons, __ATOMIC_RELEASE);
        notify_ring();
    }
    return got;
}

/* ---- printf-lite: %s %c %d %u %x %p %%, 'l'/'ll' sizes, '0' and width ---- */

static char line[256];
static size_t line_len;

static void flush(void)
{
    if (!line_len)
        return;
    console_io_write(line, line_len);
    if (rt_mirror_to_ring)
        ring_write(line, line_len);
    line_len = 0;
}

static void emit(char c)
{
    line[line_len++] = c;
    if (c == '\n' || line_len == sizeof(line))
        flush();
}

/* Output sink for the formatter: the console, or a string buffer. */
struct sink {
    char *buf;
    size_t len, cap;
};

static void put(struct sink *s, char c)
{
    if (!s) {
        emit(c);
    } else if (s->len + 1 < s->cap) {
        s->buf[s->len++] = c;
        s->buf[s->len] = 0;
    }
}

static void put_num(struct sink *s, uint64_t v, unsigned base, int neg, int width, char pad)
{
    char tmp[24];
    int n = 0;
    do {
        unsigned digit;
        if (base == 16) {
            digit = (unsigned)(v & 15);
            v >>= 4;
        } else {
            /* Decimal only for values that fit a native long: no libgcc on -m32. */
            unsigned long w = (unsigned long)v;
            digit = (unsigned)(w % 10);
            v = w / 10;
        }
        tmp[n++] = "0123456789abcdef"[digit];
    } while (v);
    if (neg)
        tmp[n++] = '-';
    while (n < width--)
        put(s, pad);
    while (n)
        put(s, tmp[--n]);
}

static void format(struct sink *s, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        int longs = 0, width = 0;
        char pad = ' ';
        if (*fmt != '%') {
            put(s, *fmt);
            continue;
        }
        fmt++;
        if (*fmt == '0')
            pad = '0';
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            longs++;
            fmt++;
        }
        switch (*fmt) {
        case 's': {
            const char *str = va_arg(ap, const char *);
            int n = 0;
            if (!str)
                str = "(null)";
            for (; str[n]; n++)
                put(s, str[n]);
            while (n++ < width)
                put(s, ' ');
            break;
        }
        case 'c':
            put(s, (char)va_arg(ap, int));
            break;
        case 'd': {
            long v = longs ? va_arg(ap, long) : va_arg(ap, int);
            put_num(s, v < 0 ? -(unsigned long)v : (unsigned long)v, 10, v < 0, width, pad);
            break;
        }
        case 'u':
            put_num(s, longs ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int), 10, 0,
                    width, pad);
            break;
        case 'x': {
            uint64_t v = longs >= 2  ? va_arg(ap, unsigned long long)
                         : longs     ? va_arg(ap, unsigned long)
                                     : va_arg(ap, unsigned int);
            put_num(s, v, 16, 0, width, pad);
            break;
        }
        case 'p':
            put(s, '0');
            put(s, 'x');
            put_num(s, (uintptr_t)va_arg(ap, void *), 16, 0, 0, '0');
            break;
        case '%':
            put(s, '%');
            break;
        default:
            put(s, '%');
            if (*fmt)
                put(s, *fmt);
            else
                return;
        }
    }
}

void vprintf(const char *fmt, va_list ap)
{
    format(NULL, fmt, ap);
}

void printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    format(NULL, fmt, ap);
    va_end(ap);
}

void puts(const char *str)
{
    while (*str)
        emit(*str++);
}

void check(int ok, const char *fmt, ...)
{
    va_list ap;
    if (ok)
        return;
    if (!rt_failures++) {
        struct sink s = { first_failure, 0, sizeof(first_failure) };
        va_start(ap, fmt);
        format(&s, fmt, ap);
        va_end(ap);
    }
    puts("check failed: ");
    va_start(ap, fmt);
    format(NULL, fmt, ap);
    va_end(ap);
    emit('\n');
}

void shutdown(unsigned int reason)
{
    struct sched_shutdown arg = { .reason = reason };
    flush();
    for (;;) {
        hypercall2(__HYPERVISOR_sched_op, SCHEDOP_shutdown, &arg);
        /* Xen does not return from a successful shutdown; if we get here the
         * VMM did not stop us, so at least stop running code. */
        __asm__ volatile("hlt");
    }
}

long hvm_get_param(uint32_t index, uint64_t *value)
{
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = index };
    long rc = hypercall2(__HYPERVISOR_hvm_op, HVMOP_get_param, &p);
    *value = p.value;
    return rc;
}

long hvm_set_param(uint32_t index, uint64_t value)
{
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = index, .value = value };
    return hypercall2(__HYPERVISOR_hvm_op, HVMOP_set_param, &p);
}

void *phys(uint64_t paddr)
{
    /* Both builds reach exactly the first 4 GiB: the 64-bit one through its
     * identity map, the 32-bit one with paging off. */
    if (paddr >= 0x100000000ULL)
        return NULL;
    return (void *)(uintptr_t)paddr;
}

/* ---- libc bits ---- */

void *memcpy(void *d, const void *s, size_t n)
{
    char *dp = d;
    const char *sp = s;
    while (n--)
        *dp++ = *sp++;
    return d;
}

void *memmove(void *d, const void *s, size_t n)
{
    char *dp = d;
    const char *sp = s;
    if (dp < sp)
        return memcpy(d, s, n);
    while (n--)
        dp[n] = sp[n];
    return d;
}

void *memset(void *d, int c, size_t n)
{
    char *dp = d;
    while (n--)
        *dp++ = (char)c;
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b)
            return (unsigned char)*a - (unsigned char)*b;
        if (!*a)
            return 0;
    }
    return 0;
}

const char *strstr(const char *h, const char *n)
{
    size_t len = strlen(n);
    for (; *h; h++)
        if (!strncmp(h, n, len))
            return h;
    return len ? NULL : h;
}

/* ---- start of day ---- */

void rt_start(struct hvm_start_info *si);
void rt_start(struct hvm_start_info *si)
{
    xen_cpuid_base = find_xen();
    if (!xen_cpuid_base) {
        /* No Xen: nothing to print through; say so on the debug port. */
        static const char msg[] = "xkvm test guest: no Xen CPUID leaves\n";
        for (const char *p = msg; *p; p++)
            outb(0xe9, (uint8_t)*p);
        for (;;)
            __asm__ volatile("hlt");
    }
    {
        uint32_t pages, msr, c, d;
        cpuid(xen_cpuid_base + 2, 0, &pages, &msr, &c, &d);
        wrmsr(msr, (uintptr_t)hypercall_page);
    }
    guest_main(si);
    if (rt_failures)
        printf("XKVM-TEST %s: FAIL %s\n", guest_name, first_failure);
    else
        printf("XKVM-TEST %s: PASS\n", guest_name);
    shutdown(SHUTDOWN_poweroff);
}
