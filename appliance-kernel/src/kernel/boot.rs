//! PVH boot (xen/include/public/arch-x86/hvm/start_info.h, qemu's `-kernel` ELF loader):
//! the ELF note `XEN_ELFNOTE_PHYS32_ENTRY` names `pvh_start`, entered in 32-bit protected
//! mode with paging off and `%ebx` = physical address of `hvm_start_info`. The assembly
//! zeroes .bss, identity-maps the first 4 GiB with 2 MiB pages, enters long mode and calls
//! [`kernel_entry`], which turns `start_info` into a safe [`BootInfo`].

use core::arch::global_asm;
use heapless::Vec as HVec;

global_asm!(
    r#"
    .section .note.pvh, "a"
    .balign 4
    .long 4                 /* namesz: "Xen\0" */
    .long 4                 /* descsz */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long pvh_start
    .balign 4

    .section .text.boot, "ax"
    .global pvh_start
    .code32
pvh_start:
    cli
    cld
    movl %ebx, %esi                 /* keep start_info */

    /* zero .bss (page tables and stack live there) */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl

    /* PML4[0] -> PDPT; PDPT[0..4] -> 4 page directories */
    movl $boot_pdpt, %eax
    orl $3, %eax
    movl %eax, boot_pml4
    movl $boot_pd, %eax
    orl $3, %eax
    movl %eax, boot_pdpt
    addl $0x1000, %eax
    movl %eax, boot_pdpt + 8
    addl $0x1000, %eax
    movl %eax, boot_pdpt + 16
    addl $0x1000, %eax
    movl %eax, boot_pdpt + 24

    /* 2048 x 2 MiB pages = 4 GiB identity map; the top GiB (MMIO) uncached */
    movl $boot_pd, %edi
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax                 /* present, writable, 2 MiB */
    cmpl $1536, %ecx
    jb 2f
    orl $0x18, %eax                 /* PWT | PCD above 3 GiB */
2:  movl %eax, (%edi,%ecx,8)
    incl %ecx
    cmpl $2048, %ecx
    jb 1b

    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x620, %eax                /* PAE | OSFXSR | OSXMMEXCPT */
    movl %eax, %cr4
    movl $0xC0000080, %ecx          /* EFER */
    rdmsr
    orl $0x100, %eax                /* LME */
    wrmsr
    movl %cr0, %eax
    andl $0xFFFFFFFB, %eax          /* clear EM */
    orl $0x80000003, %eax           /* PG | MP | PE */
    movl %eax, %cr0
    lgdt boot_gdt_ptr
    pushl $0x08
    pushl $long_mode_entry
    lretl

    .code64
long_mode_entry:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movq $boot_stack_top, %rsp
    xorl %ebp, %ebp
    movl %esi, %edi                 /* zero-extends: arg 0 = start_info paddr */
    call kernel_entry
3:  hlt
    jmp 3b

    .section .rodata.boot, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF        /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF        /* 0x10: data */
boot_gdt_ptr:
    .word boot_gdt_ptr - boot_gdt - 1
    .long boot_gdt

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
    .global boot_pd
boot_pd:    .skip 4096 * 4
    .global boot_stack
    .balign 4096
boot_stack: .skip 1024 * 1024
boot_stack_top:
    "#,
    options(att_syntax)
);

/// `hvm_start_info.magic`.
const START_INFO_MAGIC: u32 = 0x336e_c578;
/// E820 type of usable RAM.
const RAM: u32 = 1;
/// Everything above is not identity mapped.
const MAPPED_LIMIT: u64 = 4 << 30;

#[derive(Clone, Copy, Debug)]
pub struct Region {
    pub start: u64,
    pub len: u64,
}

/// What the kernel needs from the PVH handoff, copied out of guest memory.
pub struct BootInfo {
    /// RAM regions (at most 32), below [`MAPPED_LIMIT`].
    pub ram: HVec<Region, 32>,
    /// The kernel command line (`-append`), at most 1 KiB.
    pub cmdline: HVec<u8, 1024>,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// Reads a `T` from a physical address inside the identity map.
///
/// # Safety
/// `paddr` must point at readable memory holding a valid `T` (any bit pattern of the
/// plain-integer structs used here is valid).
unsafe fn read_phys<T: Copy>(paddr: u64) -> T {
    // SAFETY: guaranteed by the caller; read_unaligned makes no alignment assumption.
    unsafe { core::ptr::read_unaligned(paddr as *const T) }
}

impl BootInfo {
    /// Parses `hvm_start_info`.
    ///
    /// # Safety
    /// `paddr` must be the start_info address the PVH loader passed in `%ebx`, and the
    /// loader's structures must still be intact (called first thing, before the heap exists).
    pub unsafe fn from_pvh(paddr: u64) -> Option<BootInfo> {
        if paddr == 0 || paddr >= MAPPED_LIMIT {
            return None;
        }
        // SAFETY: per the caller, paddr points at the loader's start_info.
        let si: StartInfo = unsafe { read_phys(paddr) };
        if si.magic != START_INFO_MAGIC {
            return None;
        }
        let mut info = BootInfo {
            ram: HVec::new(),
            cmdline: HVec::new(),
        };
        if si.cmdline_paddr != 0 && si.cmdline_paddr < MAPPED_LIMIT - 1024 {
            for i in 0..1024u64 {
                // SAFETY: the loader placed a NUL-terminated string there; we stop at NUL
                // or 1 KiB, inside the identity map.
                let b: u8 = unsafe { read_phys(si.cmdline_paddr + i) };
                if b == 0 || info.cmdline.push(b).is_err() {
                    break;
                }
            }
        }
        if si.version >= 1 && si.memmap_paddr != 0 && si.memmap_paddr < MAPPED_LIMIT {
            for i in 0..u64::from(si.memmap_entries.min(128)) {
                // SAFETY: the loader's memory map has memmap_entries entries of this layout.
                let e: MemmapEntry = unsafe { read_phys(si.memmap_paddr + i * 24) };
                if e.kind != RAM || e.addr >= MAPPED_LIMIT {
                    continue;
                }
                let len = e.size.min(MAPPED_LIMIT - e.addr);
                if info.ram.push(Region { start: e.addr, len }).is_err() {
                    break;
                }
            }
        }
        Some(info)
    }
}

/// The Rust entry point, called by the boot assembly on the boot stack.
#[unsafe(no_mangle)]
extern "C" fn kernel_entry(start_info: u64) -> ! {
    // SAFETY: start_info is what the PVH loader passed; nothing has touched memory yet.
    let info = unsafe { BootInfo::from_pvh(start_info) };
    super::traps::init();
    super::serve::main(info)
}
