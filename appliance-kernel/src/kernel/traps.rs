//! CPU exceptions and wake-up interrupts (Intel SDM vol. 3, ch. 6-7, 10): an IDT whose
//! 32 exception vectors run on a
//! separate stack (TSS IST1) and turn into a panic naming the vector and faulting RIP —
//! so the host gets `ApplianceCrashed` with a message instead of a silent triple fault —
//! and a guard page under the boot stack, so a stack overflow faults instead of
//! overwriting the page tables below it.

use core::arch::{asm, global_asm};
use core::ptr::addr_of;

/// The saved state the common stub hands to Rust.
#[repr(C)]
pub struct TrapFrame {
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
}

// Stubs push a dummy error code where the CPU does not, then the vector, and share one
// path into `trap_handler` (which never returns). Vectors with a CPU error code:
// 8, 10-14, 17, 21, 29, 30.
global_asm!(
    r#"
    .section .text
    .macro TRAP_NOERR n
    .global trap_stub_\n
trap_stub_\n:
    pushq $0
    pushq $\n
    jmp trap_common
    .endm
    .macro TRAP_ERR n
    .global trap_stub_\n
trap_stub_\n:
    pushq $\n
    jmp trap_common
    .endm
    TRAP_NOERR 0
    TRAP_NOERR 1
    TRAP_NOERR 2
    TRAP_NOERR 3
    TRAP_NOERR 4
    TRAP_NOERR 5
    TRAP_NOERR 6
    TRAP_NOERR 7
    TRAP_ERR 8
    TRAP_NOERR 9
    TRAP_ERR 10
    TRAP_ERR 11
    TRAP_ERR 12
    TRAP_ERR 13
    TRAP_ERR 14
    TRAP_NOERR 15
    TRAP_NOERR 16
    TRAP_ERR 17
    TRAP_NOERR 18
    TRAP_NOERR 19
    TRAP_NOERR 20
    TRAP_ERR 21
    TRAP_NOERR 22
    TRAP_NOERR 23
    TRAP_NOERR 24
    TRAP_NOERR 25
    TRAP_NOERR 26
    TRAP_NOERR 27
    TRAP_NOERR 28
    TRAP_ERR 29
    TRAP_ERR 30
    TRAP_NOERR 31
trap_common:
    movq %rsp, %rdi
    andq $-16, %rsp
    call trap_handler
    ud2

    /* Device interrupts only wake the CPU from `hlt`: acknowledge at the local APIC. */
    .global irq_wake_stub
irq_wake_stub:
    pushq %rax
    movabsq $0xFEE000B0, %rax
    movl $0, (%rax)
    popq %rax
    iretq
    /* The APIC's spurious vector needs no EOI. */
    .global irq_spurious_stub
irq_spurious_stub:
    iretq

    .section .rodata
    .balign 8
    .global trap_stub_table
trap_stub_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad trap_stub_\n
    .endr
    "#,
    options(att_syntax)
);

/// The vector device interrupts (MSI-X) are delivered on.
pub const WAKE_VECTOR: u8 = 0x40;
/// The local APIC's spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0xFF;

unsafe extern "C" {
    fn irq_wake_stub();
    fn irq_spurious_stub();
    static trap_stub_table: [u64; 32];
    static boot_pd: [u64; 2048];
    static boot_stack: u8;
}

#[unsafe(no_mangle)]
extern "C" fn trap_handler(frame: &TrapFrame) -> ! {
    let name = match frame.vector {
        0 => "divide error",
        6 => "invalid opcode",
        8 => "double fault",
        13 => "general protection fault",
        14 => "page fault",
        _ => "CPU exception",
    };
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
    let guard = addr_of!(boot_stack) as u64;
    if frame.vector == 14 && (guard..guard + 4096).contains(&cr2) {
        panic!("appliance stack overflow (rip {:#x})", frame.rip);
    }
    panic!(
        "{name} (vector {}, error {:#x}) at rip {:#x}, rsp {:#x}, cr2 {:#x}",
        frame.vector, frame.error, frame.rip, frame.rsp, cr2
    );
}

#[repr(C, align(16))]
struct Idt([u64; 512]);

#[repr(C, packed(4))]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

#[repr(C, align(16))]
struct Gdt([u64; 5]);

#[repr(C, align(4096))]
struct TrapStack([u8; 64 * 1024]);

#[repr(C, align(4096))]
struct PageTable([u64; 512]);

static mut IDT: Idt = Idt([0; 512]);
static mut TSS: Tss = Tss {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: 104,
};
static mut GDT: Gdt = Gdt([0; 5]);
static mut TRAP_STACK: TrapStack = TrapStack([0; 64 * 1024]);
static mut STACK_PT: PageTable = PageTable([0; 512]);

#[repr(C, packed)]
struct DescriptorPtr {
    limit: u16,
    base: u64,
}

/// Installs the GDT (with a TSS), the IDT and the stack guard page. Called once, first
/// thing in Rust, on the boot CPU with interrupts off.
pub fn init() {
    // SAFETY: single CPU, interrupts off, called once before anything else uses these
    // statics; the descriptors and page tables written here follow the SDM formats, and
    // the page-table change keeps every mapping identical except the guard page.
    unsafe {
        let tss = addr_of!(TSS) as u64;
        let stack_top = (addr_of!(TRAP_STACK) as u64) + 64 * 1024;
        TSS.ist[0] = stack_top;

        // GDT: null, code64 (0x08), data (0x10), TSS (0x18, 16 bytes).
        GDT.0[0] = 0;
        GDT.0[1] = 0x00AF_9A00_0000_FFFF;
        GDT.0[2] = 0x00CF_9200_0000_FFFF;
        let limit = (core::mem::size_of::<Tss>() - 1) as u64;
        GDT.0[3] = (limit & 0xffff)
            | ((tss & 0xff_ffff) << 16)
            | (0x89 << 40)
            | (((limit >> 16) & 0xf) << 48)
            | (((tss >> 24) & 0xff) << 56);
        GDT.0[4] = tss >> 32;
        let gdtr = DescriptorPtr {
            limit: (core::mem::size_of::<Gdt>() - 1) as u16,
            base: addr_of!(GDT) as u64,
        };
        asm!("lgdt [{}]", in(reg) &gdtr, options(readonly, nostack, preserves_flags));
        asm!("mov ax, 0x18", "ltr ax", out("ax") _, options(nomem, nostack, preserves_flags));

        // IDT: 32 exception gates, plus the wake-up and spurious vectors; interrupt gates
        // on IST1 with code selector 0x08.
        let vectors = trap_stub_table.iter().copied().enumerate().chain([
            (
                usize::from(WAKE_VECTOR),
                irq_wake_stub as *const () as usize as u64,
            ),
            (
                usize::from(SPURIOUS_VECTOR),
                irq_spurious_stub as *const () as usize as u64,
            ),
        ]);
        for (v, handler) in vectors {
            let lo = (handler & 0xffff)
                | (0x08 << 16)
                | (1 << 32)
                | (0x8E << 40)
                | (((handler >> 16) & 0xffff) << 48);
            IDT.0[2 * v] = lo;
            IDT.0[2 * v + 1] = handler >> 32;
        }
        let idtr = DescriptorPtr {
            limit: (core::mem::size_of::<Idt>() - 1) as u16,
            base: addr_of!(IDT) as u64,
        };
        asm!("lidt [{}]", in(reg) &idtr, options(readonly, nostack, preserves_flags));

        // Guard page: map the 2 MiB region holding the stack's lowest page with 4 KiB
        // pages and leave that page out.
        let guard = addr_of!(boot_stack) as u64;
        let region = guard & !((2 << 20) - 1);
        let pt = &raw mut STACK_PT;
        for (i, e) in (*pt).0.iter_mut().enumerate() {
            let addr = region + (i as u64) * 4096;
            *e = if addr == guard { 0 } else { addr | 0x3 };
        }
        let pd = addr_of!(boot_pd) as *mut u64;
        pd.add((region >> 21) as usize)
            .write_volatile((pt as u64) | 0x3);
        asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack, preserves_flags));
    }
}
