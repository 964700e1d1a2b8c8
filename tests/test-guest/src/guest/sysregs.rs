//! System registers the hypervisor keeps from the guest (HCR_EL2.TIDCP, TACR, TERR):
//! an implementation-defined encoding is UNDEFINED, ACTLR_EL1 reads its physical value
//! and ignores writes, and the RAS error records (with FEAT_RAS) read as none. The
//! hypervisor counts each trapped access (`hyp-exits: ... sysreg=N`: 4 from this test, 5
//! with FEAT_RAS), which the QEMU test checks: on QEMU most of these registers behave the
//! same untrapped.

use super::Env;
use super::cpu::{read_sysreg, write_sysreg};
use super::exceptions::{Recovery, expect_fault};
use crate::esr;
use crate::report::TestResult;
use crate::{ensure, failed, text};

pub fn trapped_system_registers(_env: &Env) -> TestResult {
    // S3_0_C15_C0_0: an implementation-defined encoding (TIDCP).
    let (_, fault) = expect_fault(Recovery::SkipInstruction, || read_sysreg!("s3_0_c15_c0_0"));
    let Some(fault) = fault else {
        return Err(failed!("reading S3_0_C15_C0_0 did not fault"));
    };
    ensure!(
        esr::ec(fault.esr) == 0,
        "reading S3_0_C15_C0_0: {fault}, want UNDEFINED (EC 0)"
    );

    // ACTLR_EL1 (TACR): a read, the same value written back, a read again.
    let actlr = read_sysreg!("actlr_el1");
    write_sysreg!("actlr_el1", actlr);
    let again = read_sysreg!("actlr_el1");
    ensure!(
        again == actlr,
        "ACTLR_EL1 read {actlr:#x}, then {again:#x} after writing it back"
    );

    // The RAS error records (TERR), where the CPU has them.
    let ras = (read_sysreg!("id_aa64pfr0_el1") >> 28) & 0xf != 0;
    if !ras {
        return Ok(text!(
            "IMPDEF UNDEFINED, ACTLR_EL1 {actlr:#x} stable; no FEAT_RAS"
        ));
    }
    // ERRIDR_EL1 only: with NUM = 0 a guest has no reason to select or read a record,
    // and QEMU makes the record registers UNDEFINED when it implements none.
    let records = read_sysreg!("s3_0_c5_c3_0");
    ensure!(
        records & 0xffff == 0,
        "ERRIDR_EL1.NUM is {}: the guest sees error records",
        records & 0xffff
    );
    Ok(text!(
        "IMPDEF UNDEFINED, ACTLR_EL1 {actlr:#x} stable, ERRIDR_EL1.NUM 0"
    ))
}
