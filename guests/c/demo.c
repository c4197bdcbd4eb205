/* The README's demo: a greeting on the Xen console (console_io) and on the
 * primary console ring when the domain has one, then poweroff. */
#include "rt.h"

void guest_main(struct hvm_start_info *si)
{
    static const char greeting[] = "Hello from a Xen PVH guest on xkvm!\n";
    (void)si;
    console_io_write(greeting, sizeof(greeting) - 1);
    if (console_ring(NULL))
        check(ring_write(greeting, sizeof(greeting) - 1) == 0,
              "the console ring was not drained");
}
