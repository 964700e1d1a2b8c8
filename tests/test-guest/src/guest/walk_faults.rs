//! Stage-2 faults on the guest's own stage-1 table walk (ESR.S1PTW) and on instructions
//! whose syndrome says "write" without being stores (ESR.CM): the hypervisor must judge
//! them by what the walk needed, not by WnR or the exception class, or it retries them
//! forever.
//!
//! The test builds a private stage-1 branch (level 1, 2 and 3 tables in its own pages)
//! under a level-0 slot the identity map does not use, and maps one VA through it to a
//! page holding a `ret`. Then it makes the level-3 table's page inaccessible to the walk
//! at stage 2 while keeping one permission:
//! - write-only, and `AT S1E1R` on the VA: the walk's stage-2 permission fault is reported
//!   with S1PTW = 1, CM = 1, WnR = 1. A handler that believes WnR sees a write to a
//!   writable page and retries for ever;
//! - execute-only, and a call to the VA: an instruction abort with S1PTW = 1. A handler
//!   that believes the exception class sees a fetch from an executable page and retries
//!   for ever.
//!
//! Both must come back as a fault to the guest (the walk cannot read the table), and
//! both work again once the table's page is readable.

use super::Env;
use super::cpu::{self, read_sysreg};
use super::exceptions::{Recovery, expect_fault};
use super::tests::{mem_protect, protect};
use crate::abi::*;
use crate::esr::{self, Syndrome};
use crate::report::TestResult;
use crate::{ensure, failed, text};

#[repr(C, align(4096))]
struct Page([u64; 512]);

/// Level 1, 2, 3 tables, and the code page the VA maps to.
static mut PAGES: [Page; 4] = [const { Page([0; 512]) }; 4];

/// A level-0 slot far from RAM and the devices: VA 0x7f80_0000_0000 (index 255).
const SLOT: usize = 255;
const VA: u64 = (SLOT as u64) << 39;

const TABLE: u64 = 0b11;
/// Level-3 page: valid page, AF, inner shareable, AttrIndx 1 (the guest's Normal
/// write-back, `stage1::MAIR`), EL1 read-only (AP = 0b10), executable at EL1.
const PAGE_RO_X: u64 = 0b11 | (1 << 10) | (0b11 << 8) | (0b10 << 6) | (1 << 2);
const RET: u32 = 0xd65f_03c0;

fn page(index: usize) -> u64 {
    // SAFETY: only the address is taken.
    unsafe { (&raw const PAGES[index]) as u64 }
}

/// `AT S1E1R` of `va`: PAR_EL1.
fn at_s1e1r(va: u64) -> u64 {
    // SAFETY: address translation writes PAR_EL1 only; ISB before reading it.
    unsafe {
        core::arch::asm!("at s1e1r, {}", "isb", in(reg) va, options(nostack, preserves_flags))
    };
    read_sysreg!("par_el1")
}

/// Hooks the private branch into the live root: an invalid entry becoming a table entry
/// needs no TLB invalidation, only the stores visible to the walker (DSB) and a context
/// synchronisation (ISB).
fn build_branch(root: u64) -> Result<(), crate::report::Failure> {
    let [l1, l2, l3, code] = [page(0), page(1), page(2), page(3)];
    // SAFETY: the pages are this module's own statics; the root is the guest's live
    // stage-1 root, whose slot SLOT is checked to be unused first.
    unsafe {
        (code as *mut u32).write_volatile(RET);
        (l3 as *mut u64).write_volatile(code | PAGE_RO_X);
        (l2 as *mut u64).write_volatile(l3 | TABLE);
        (l1 as *mut u64).write_volatile(l2 | TABLE);
        let slot = (root as *mut u64).add(SLOT);
        ensure!(
            slot.read_volatile() == 0,
            "level-0 slot {SLOT} of the stage-1 root is in use"
        );
        cpu::dsb_ish();
        slot.write_volatile(l1 | TABLE);
    }
    cpu::sync_icache(code, 4);
    cpu::dsb_ish();
    cpu::isb();
    Ok(())
}

pub fn stage1_walk_faults_reach_the_guest(env: &Env) -> TestResult {
    let Some(mmu) = env.mmu.as_ref() else {
        return Err(failed!("no stage-1 MMU"));
    };
    let root = mmu.ttbr0 & 0x0000_ffff_ffff_f000;
    build_branch(root)?;
    let l3 = page(2);
    ensure!(
        at_s1e1r(VA) & 1 == 0,
        "AT S1E1R of {VA:#x} fails before any change"
    );

    // Write-only table page: the AT's walk cannot read it.
    protect(l3, PAGE_SIZE, PERM_WRITE)?;
    let (par, fault) = expect_fault(Recovery::SkipInstruction, || at_s1e1r(VA));
    let restored = mem_protect(l3, PAGE_SIZE, PERM_ALL);
    ensure!(
        restored == SUCCESS,
        "restoring the table page: {}",
        Status(restored)
    );
    let at_note = match fault {
        Some(fault) => {
            ensure!(
                esr::is_data_abort(fault.esr) && esr::fault_status(fault.esr) & 0x3c == 0x0c,
                "AT on a write-only table page: {fault}, want a permission data abort"
            );
            text!("AT: {}", Syndrome(fault.esr))
        }
        // The architecture also allows the stage-2 fault of an AT walk to be reported in
        // PAR_EL1 (F = 1, S = 1); either way it must not be retried for ever.
        None if par & 1 == 1 => text!("AT: PAR_EL1 {par:#x} (fault reported in PAR)"),
        None => {
            return Err(failed!(
                "AT through a write-only table page translated: PAR {par:#x}"
            ));
        }
    };
    ensure!(
        at_s1e1r(VA) & 1 == 0,
        "AT fails after the table page is back"
    );

    // Execute-only table page: the fetch's walk cannot read it.
    // SAFETY: VA maps the `ret` written in `build_branch`; a fetch fault returns to the
    // caller (Recovery::ReturnToCaller).
    let function: extern "C" fn() = unsafe { core::mem::transmute(VA as usize) };
    let (_, fault) = expect_fault(Recovery::ReturnToCaller, || function());
    if let Some(fault) = fault {
        return Err(failed!(
            "calling {VA:#x} faulted before any change: {fault}"
        ));
    }
    protect(l3, PAGE_SIZE, PERM_EXECUTE)?;
    // The VA's translation may be in the TLB from the call above; drop it so the fetch
    // walks (TLBI VAE1 by VA, then DSB, ISB).
    // SAFETY: TLB maintenance of this guest's own stage 1.
    unsafe {
        core::arch::asm!("tlbi vaae1is, {}", "dsb ish", "isb", in(reg) VA >> 12,
            options(nostack, preserves_flags))
    };
    let (_, fault) = expect_fault(Recovery::ReturnToCaller, || function());
    let restored = mem_protect(l3, PAGE_SIZE, PERM_ALL);
    ensure!(
        restored == SUCCESS,
        "restoring the table page: {}",
        Status(restored)
    );
    let Some(fault) = fault else {
        return Err(failed!(
            "a fetch through an execute-only table page did not fault"
        ));
    };
    ensure!(
        esr::is_instruction_abort(fault.esr) && esr::fault_status(fault.esr) & 0x3c == 0x0c,
        "fetch through an execute-only table page: {fault}, want a permission instruction abort"
    );
    let (_, again) = expect_fault(Recovery::ReturnToCaller, || function());
    if let Some(again) = again {
        return Err(failed!(
            "the call faults after the table page is back: {again}"
        ));
    }
    Ok(text!("{at_note}; fetch: {}", Syndrome(fault.esr)))
}
