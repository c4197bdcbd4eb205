/*
 * Takes an exception with no IDT: #UD, then #DF, then a triple fault, which
 * Xen turns into the shutdown reason in HVM_PARAM_TRIPLE_FAULT_REASON
 * (SHUTDOWN_reboot unless the toolstack changes it, as on real hardware).
 */
#include "rt.h"

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    printf("fault: executing ud2 without an IDT\n");
    __asm__ volatile("ud2");
    check(0, "survived ud2 without an IDT");
}
