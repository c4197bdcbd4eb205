/*
 * The primary console ring: writes a prompt to it, then reads one line of
 * input from it and echoes it back on the ring and on console_io:
 *   console input: <line>
 */
#include "rt.h"

void guest_main(struct hvm_start_info *si)
{
    char buf[128];
    size_t n = 0;
    uint32_t port;
    static const char prompt[] = "xkvm console test: type a line\n";
    (void)si;

    if (!console_ring(&port)) {
        check(0, "no console ring (HVM_PARAM_CONSOLE_PFN)");
        return;
    }
    printf("console ring port %u\n", port);
    check(ring_write(prompt, sizeof(prompt) - 1) == 0, "the console ring was not drained");
    while (n < sizeof(buf) - 1) {
        size_t got = ring_read(buf + n, 1, 200000);
        if (!got)
            break;
        if (buf[n] == '\n' || buf[n] == '\r')
            break;
        n++;
    }
    buf[n] = 0;
    check(n > 0, "no console input arrived");
    printf("console input: %s\n", buf);
    ring_write("echo: ", 6);
    ring_write(buf, n);
    ring_write("\n", 1);
}
