/*
 * A guest with "PV drivers" for shutdown, as Linux's xenbus does it: it
 * advertises control/feature-poweroff and feature-reboot, watches
 * control/shutdown through its XenStore ring, and when the toolstack writes
 * a request there ("poweroff", "reboot", "halt", "crash") it acknowledges by
 * clearing the node and shuts down with that reason. Until then it sleeps in
 * SCHEDOP_poll on the XenStore event channel, so it also serves as a guest
 * that runs until destroyed.
 */
#include "pvfront.h"

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    /* Events are polled, never delivered as upcalls. */
    if (!pvfront_map_shared_info()) {
        check(0, "cannot map shared_info");
        return;
    }
    if (!pvfront_init()) {
        check(0, "no XenStore ring");
        return;
    }
    /* PV drivers announce themselves with a callback: libxl only uses
     * control/shutdown for a PVH/HVM guest that has set one. Interrupts
     * stay off here, so the vector is never taken. */
    if (hvm_set_param(HVM_PARAM_CALLBACK_IRQ, (2ULL << 56) | 0xf3) != 0) {
        check(0, "cannot set HVM_PARAM_CALLBACK_IRQ");
        return;
    }
    xs_request(XS_WRITE, "control/feature-poweroff", "1", 0);
    xs_request(XS_WRITE, "control/feature-reboot", "1", 0);
    if (xs_request(XS_WATCH, "control/shutdown", "xkvm", 1) != XS_WATCH) {
        check(0, "XS_WATCH control/shutdown failed: %s", reply);
        return;
    }
    printf("xsshutdown: waiting for control/shutdown\n");
    for (;;) {
        while (!watch_fired)
            xs_read_msg();
        watch_fired = 0;
        if (xs_request(XS_READ, "control/shutdown", NULL, 0) != XS_READ || !reply[0])
            continue;
        unsigned int reason;
        if (!strcmp(reply, "poweroff") || !strcmp(reply, "halt"))
            reason = SHUTDOWN_poweroff;
        else if (!strcmp(reply, "reboot"))
            reason = SHUTDOWN_reboot;
        else if (!strcmp(reply, "crash"))
            reason = SHUTDOWN_crash;
        else {
            printf("xsshutdown: ignoring request '%s'\n", reply);
            continue;
        }
        printf("XKVM-TEST %s: PASS control/shutdown = %s\n", guest_name, reply);
        /* Acknowledge: libxl waits for the node to be emptied. */
        xs_request(XS_WRITE, "control/shutdown", "", 0);
        shutdown(reason);
    }
}
