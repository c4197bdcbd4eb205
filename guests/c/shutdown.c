/*
 * Shuts down with the reason its command line names: "poweroff", "reboot",
 * "crash", "watchdog", "soft_reset" or "suspend" (first word). The verdict
 * line comes before the shutdown, since nothing runs after it.
 */
#include "rt.h"

static const struct {
    const char *name;
    unsigned int reason;
} reasons[] = {
    { "poweroff", SHUTDOWN_poweroff }, { "reboot", SHUTDOWN_reboot },
    { "suspend", SHUTDOWN_suspend },   { "crash", SHUTDOWN_crash },
    { "watchdog", SHUTDOWN_watchdog }, { "soft_reset", SHUTDOWN_soft_reset },
};

void guest_main(struct hvm_start_info *si)
{
    const char *cmdline = si->cmdline_paddr ? phys(si->cmdline_paddr) : NULL;
    if (!cmdline) {
        check(0, "no command line naming a shutdown reason");
        return;
    }
    for (unsigned i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        size_t n = strlen(reasons[i].name);
        if (!strncmp(cmdline, reasons[i].name, n) && (cmdline[n] == 0 || cmdline[n] == ' ')) {
            printf("XKVM-TEST %s: PASS shutting down with reason %u (%s)\n", guest_name,
                   reasons[i].reason, reasons[i].name);
            shutdown(reasons[i].reason);
        }
    }
    check(0, "unknown shutdown reason in command line '%s'", cmdline);
}
