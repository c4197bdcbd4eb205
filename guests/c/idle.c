/*
 * A guest without PV drivers that runs until it is destroyed: it says so
 * on console_io, then blocks in SCHEDOP_block forever (no event ever
 * arrives, since it binds no event channel and sets no callback).
 */
#include "rt.h"

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    printf("idle: running until destroyed\n");
    for (;;)
        hypercall2(__HYPERVISOR_sched_op, SCHEDOP_block, 0);
}
