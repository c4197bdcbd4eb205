/*
 * PVH entry for the test guests. Xen's docs/misc/pvh.pandoc: the vCPU starts
 * at the XEN_ELFNOTE_PHYS32_ENTRY address in 32-bit flat protected mode
 * (CR0.PE only, paging off, interrupts off) with EBX = hvm_start_info paddr.
 *
 * 64-bit build: identity-map the first 4 GiB with 2 MiB PAE pages (32-bit
 * non-PAE paging does not work on the software KVM we test on), enter long
 * mode and call rt_start(start_info) in C.
 * 32-bit build: stay in flat protected mode without paging and call
 * rt_start(start_info). It must never take an exception or interrupt.
 */

#define XEN_ELFNOTE_XEN_VERSION 5
#define XEN_ELFNOTE_GUEST_OS 6
#define XEN_ELFNOTE_GUEST_VERSION 7
#define XEN_ELFNOTE_LOADER 8
#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* One ELF note, named "Xen", as Linux's ELFNOTE() macro lays it out. */
#define ELFNOTE(type, desc)                 \
        .pushsection .note.Xen, "a", @note; \
        .balign 4;                          \
        .long 2f - 1f;                      \
        .long 4484f - 3f;                   \
        .long type;                         \
1:      .asciz "Xen";                       \
2:      .balign 4;                          \
3:      desc;                               \
4484:   .balign 4;                          \
        .popsection

        ELFNOTE(XEN_ELFNOTE_GUEST_OS, .asciz "xkvm-test-guest")
        ELFNOTE(XEN_ELFNOTE_GUEST_VERSION, .asciz "1")
        ELFNOTE(XEN_ELFNOTE_XEN_VERSION, .asciz "xen-3.0")
        ELFNOTE(XEN_ELFNOTE_LOADER, .asciz "generic")
        ELFNOTE(XEN_ELFNOTE_PHYS32_ENTRY, .long pvh_start)

        .section .text.entry, "ax"
        .code32
        .globl pvh_start
pvh_start:
        cld
        mov     $stack_top, %esp
        mov     %ebx, %esi              /* keep start info across the setup */

#ifdef __x86_64__
        lgdt    gdt_desc

        /* PDPT[0..3] -> the four page directories, PML4[0] -> PDPT. */
        mov     $pdpt, %edi
        mov     $pd, %eax
        or      $3, %eax                /* present, writable */
        mov     $4, %ecx
1:      mov     %eax, (%edi)
        movl    $0, 4(%edi)
        add     $4096, %eax
        add     $8, %edi
        loop    1b
        mov     $pdpt, %eax
        or      $3, %eax
        mov     %eax, pml4

        /* 2048 PDEs of 2 MiB each: 0 .. 4 GiB, identity. */
        mov     $pd, %edi
        mov     $0x83, %eax             /* present, writable, PS */
        mov     $2048, %ecx
1:      mov     %eax, (%edi)
        movl    $0, 4(%edi)
        add     $0x200000, %eax
        add     $8, %edi
        loop    1b

        mov     %cr4, %eax
        or      $0x20, %eax             /* CR4.PAE */
        mov     %eax, %cr4
        mov     $pml4, %eax
        mov     %eax, %cr3
        mov     $0xc0000080, %ecx       /* EFER */
        rdmsr
        or      $0x100, %eax            /* LME */
        wrmsr
        mov     %cr0, %eax
        or      $0x80000000, %eax       /* PG */
        mov     %eax, %cr0
        ljmp    $0x08, $start64

        .code64
start64:
        mov     $0x10, %eax
        mov     %eax, %ds
        mov     %eax, %es
        mov     %eax, %ss
        mov     %eax, %fs
        mov     %eax, %gs
        mov     $stack_top, %rsp
        mov     %esi, %edi              /* zero-extends: rt_start(start_info) */
        call    rt_start
1:      hlt
        jmp     1b

        .section .rodata
        .balign 8
gdt:
        .quad   0
        .quad   0x00af9a000000ffff      /* 0x08: 64-bit code */
        .quad   0x00cf92000000ffff      /* 0x10: flat data */
gdt_end:
gdt_desc:
        .word   gdt_end - gdt - 1
        .long   gdt

        .section .bss.pagetables, "aw", @nobits
        .balign 4096
pml4:   .skip   4096
pdpt:   .skip   4096
pd:     .skip   4 * 4096
#else
        push    %esi                    /* rt_start(start_info), cdecl */
        call    rt_start
1:      hlt
        jmp     1b
#endif

        .section .bss.stack, "aw", @nobits
        .balign 16
stack:  .skip   16384
stack_top:

        .section .note.GNU-stack, "", @progbits
