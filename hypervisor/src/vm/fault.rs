//! What a guest's instruction or data abort taken to EL2 asks of the hypervisor, decoded
//! from ESR_EL2 alone, so the EL2 handler only reads registers and acts.
//!
//! The fields are those of the Arm ARM's ESR_EL2 "ISS encoding for an exception from an
//! Instruction Abort" and "... from a Data Abort": IFSC/DFSC ISS[5:0], WnR ISS[6] (data
//! aborts), S1PTW ISS[7], CM ISS[8] (data aborts), FnV ISS[10]. Three of them change what
//! the faulting access needed from the stage-2 entry:
//!
//! - S1PTW: the access that faulted at stage 2 was the guest's own stage-1 table walk, a
//!   descriptor read (or a hardware Access-flag/dirty-state update of that descriptor),
//!   never an instruction fetch, even when the walk was for one.
//! - CM: a cache maintenance (or AT) instruction reports WnR = 1, yet the architecture
//!   treats it as a read (Linux db6f41063cbd, "arm64: mm: don't treat user cache
//!   maintenance faults as writes"); only DC IVAC needs write permission.
//! - A Permission fault on either of the two cannot say whether write was needed:
//!   [`AccessKind::ReadMaybeWrite`].
//!
//! Which IPA the fault is about depends on when HPFAR_EL2 is written (Arm ARM rule
//! R_FKLWR, as KVM's `__hpfar_valid` reads it): see [`hpfar_valid`] and [`FaultIpa`].

use pgtable::Access;

use crate::arch::esr::{Esr, ExceptionClass};

/// DFSC/IFSC 0b110000: TLB conflict abort.
const FSC_TLB_CONFLICT: u8 = 0x30;

/// What the faulting access needed from the stage-2 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    /// A data read: a load, a stage-1 table walk's descriptor read, or a cache
    /// maintenance instruction outside a Permission fault (a Translation or Access flag
    /// fault only asks for a mapping; if the instruction then needs write, it comes back
    /// as a Permission fault).
    Read,
    /// A data write (WnR = 1, neither CM nor S1PTW).
    Write,
    /// An instruction fetch: an instruction abort not on a stage-1 table walk.
    Execute,
    /// A Permission fault on a stage-1 table walk (S1PTW) or a cache maintenance
    /// instruction (CM). The walk reads a descriptor and, with the guest's hardware
    /// Access flag / dirty state management (TCR_EL1.HA/HD), may write it; the
    /// instruction needs read (DC CVAC, CIVAC, CVAU, IC IVAU...) or write (DC IVAC, whose
    /// Arm ARM description requires write permission). The syndrome says neither, so
    /// the access counts as needing both: the fault is explained by the entry when
    /// either permission is missing, and only an entry granting both makes it transient.
    ///
    /// KVM's `kvm_is_write_fault` calls the S1PTW case a write and KVM's
    /// `user_mem_abort` the CM case a write ("KVM: arm64: Handle CMOs on Read Only
    /// memslots"). That is right where the entry grants read, but at stage 2 a page can
    /// be write-only: there a "write" looks allowed and the handler would retry forever.
    ReadMaybeWrite,
}

impl AccessKind {
    /// Whether an entry granting `granted` lets this access through. A stage-2 fault on
    /// an access the current entry allows came from a transient state (break-before-make,
    /// or a change since): retry. Otherwise the entry explains the fault.
    pub fn allowed_by(self, granted: Access) -> bool {
        granted.contains(match self {
            AccessKind::Read => Access::READ,
            AccessKind::Write => Access::WRITE,
            AccessKind::Execute => Access::EXECUTE,
            AccessKind::ReadMaybeWrite => Access::READ_WRITE,
        })
    }
}

/// The faulting access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultAccess {
    /// What it needed from the stage-2 entry.
    pub kind: AccessKind,
    /// ESR.S1PTW: it was the guest's stage-1 table walk.
    pub stage1_walk: bool,
    /// ESR.CM (data aborts only): it came from a cache maintenance or AT instruction.
    pub cache_maintenance: bool,
}

/// A level-encoded fault status code's lookup level, 0..=3 (the FSC's low two bits).
pub type Level = u8;

/// A guest's stage-2 abort, by what the hypervisor must do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2Fault {
    /// DFSC/IFSC 0b110000: this PE's TLB holds more than one entry for the address
    /// (Arm ARM "TLB conflict abort"), as a block split without break-before-make may
    /// leave behind (FEAT_BBM level 1 or 2). Nothing is wrong with the guest's access:
    /// never inject. Invalidate the VMID's stage 1 and 2 entries on this PE (`TLBI
    /// VMALLS12E1`, `DSB NSH`, `ISB`) and retry. HPFAR_EL2 is not written for it and FAR
    /// is a VA, so invalidation by IPA is not possible.
    TlbConflict,
    /// DFSC/IFSC 0b0000LL: an output address beyond the configured PA size.
    AddressSize { level: Level, access: FaultAccess },
    /// DFSC/IFSC 0b0001LL: no valid stage-2 entry (for guest RAM here, transiently).
    Translation { level: Level, access: FaultAccess },
    /// DFSC/IFSC 0b0010LL: the stage-2 entry's AF is 0.
    AccessFlag { level: Level, access: FaultAccess },
    /// DFSC/IFSC 0b0011LL: the stage-2 entry's permissions. Compare
    /// [`FaultAccess::kind`] with the entry now ([`AccessKind::allowed_by`]).
    Permission { level: Level, access: FaultAccess },
    /// DFSC/IFSC 0b010000 (not on a walk), 0b0101LL (on a walk at `level`), and without
    /// FEAT_RAS the parity/ECC forms 0b011000 and 0b0111LL (`parity`).
    ExternalAbort {
        walk_level: Option<Level>,
        parity: bool,
        /// FAR_EL2 holds the faulting VA (FnV = 0; always for the walk forms).
        far_valid: bool,
        access: FaultAccess,
    },
    /// Any other code (alignment, tag check, unsupported atomic or exclusive, granule
    /// protection, level -1 forms of FEAT_LPA2, reserved), raw.
    Other { fsc: u8, access: FaultAccess },
}

/// Where the faulting IPA comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultIpa {
    /// HPFAR_EL2 holds it: [`ipa_from_hpfar`].
    Hpfar,
    /// HPFAR_EL2 is UNKNOWN, but FAR_EL2 holds a VA the guest's stage 1 translated: the
    /// IPA is that translation (`AT S1E1R` on FAR_EL2, then PAR_EL1), as KVM's
    /// `__translate_far_to_hpfar` does. If the translation fails (the guest changed its
    /// tables since), return to the guest and let it fault again.
    TranslateFar,
    /// Unknown: a TLB conflict, an external abort on a table walk (walking again would
    /// repeat it), or FAR_EL2 not valid (FnV).
    Unknown,
}

impl Stage2Fault {
    /// The faulting access; `None` for a TLB conflict, which is about no access.
    pub fn access(&self) -> Option<FaultAccess> {
        match *self {
            Stage2Fault::TlbConflict => None,
            Stage2Fault::AddressSize { access, .. }
            | Stage2Fault::Translation { access, .. }
            | Stage2Fault::AccessFlag { access, .. }
            | Stage2Fault::Permission { access, .. }
            | Stage2Fault::ExternalAbort { access, .. }
            | Stage2Fault::Other { access, .. } => Some(access),
        }
    }

    /// Where the faulting IPA comes from (Arm ARM R_FKLWR: HPFAR_EL2 is written for
    /// stage-2 Translation, Access flag and Address size faults, and for stage-2
    /// Permission faults on a stage-1 table walk).
    pub fn ipa(&self) -> FaultIpa {
        match *self {
            Stage2Fault::TlbConflict => FaultIpa::Unknown,
            Stage2Fault::AddressSize { .. }
            | Stage2Fault::Translation { .. }
            | Stage2Fault::AccessFlag { .. } => FaultIpa::Hpfar,
            Stage2Fault::Permission { access, .. } if access.stage1_walk => FaultIpa::Hpfar,
            Stage2Fault::Permission { .. } => FaultIpa::TranslateFar,
            Stage2Fault::ExternalAbort {
                walk_level: None,
                far_valid: true,
                ..
            } => FaultIpa::TranslateFar,
            Stage2Fault::ExternalAbort { .. } => FaultIpa::Unknown,
            Stage2Fault::Other { .. } => FaultIpa::TranslateFar,
        }
    }
}

/// Decodes an instruction abort (EC 0x20) or data abort (EC 0x24) from a lower EL;
/// `None` for every other class, aborts taken at EL2 included.
pub fn classify(esr: Esr) -> Option<Stage2Fault> {
    let class = esr.class();
    let instruction = class == ExceptionClass::INSTR_ABORT_LOWER;
    if !instruction && class != ExceptionClass::DATA_ABORT_LOWER {
        return None;
    }
    let fsc = esr.fault_status();
    if fsc == FSC_TLB_CONFLICT {
        return Some(Stage2Fault::TlbConflict);
    }
    let level = fsc & 0b11;
    let permission = fsc & 0b11_1100 == 0b00_1100;
    let stage1_walk = esr.stage1_walk();
    // CM and WnR are RES0 in an instruction abort's ISS.
    let cache_maintenance = !instruction && esr.cache_maintenance();
    let kind = if stage1_walk || cache_maintenance {
        if permission {
            AccessKind::ReadMaybeWrite
        } else {
            AccessKind::Read
        }
    } else if instruction {
        AccessKind::Execute
    } else if esr.is_write() {
        AccessKind::Write
    } else {
        AccessKind::Read
    };
    let access = FaultAccess {
        kind,
        stage1_walk,
        cache_maintenance,
    };
    Some(match fsc {
        0x00..=0x03 => Stage2Fault::AddressSize { level, access },
        0x04..=0x07 => Stage2Fault::Translation { level, access },
        0x08..=0x0b => Stage2Fault::AccessFlag { level, access },
        0x0c..=0x0f => Stage2Fault::Permission { level, access },
        0x10 | 0x18 => Stage2Fault::ExternalAbort {
            walk_level: None,
            parity: fsc == 0x18,
            far_valid: !esr.far_not_valid(),
            access,
        },
        0x14..=0x17 | 0x1c..=0x1f => Stage2Fault::ExternalAbort {
            walk_level: Some(level),
            parity: fsc >= 0x1c,
            far_valid: true,
            access,
        },
        _ => Stage2Fault::Other { fsc, access },
    })
}

/// Whether HPFAR_EL2 holds the faulting IPA for this ESR_EL2 (Arm ARM R_FKLWR; KVM's
/// `__hpfar_valid`): a lower-EL abort with a stage-2 Translation, Access flag or Address
/// size fault, or a stage-2 Permission fault on a stage-1 table walk. Not for a TLB
/// conflict, an external abort, or a Permission fault on the access itself.
///
/// On CPUs with Arm erratum 834220 (Cortex-A57/A72 and others) a stage-1 Permission
/// fault can be misreported as a stage-2 Translation fault; KVM then translates FAR
/// instead (as for [`FaultIpa::TranslateFar`]). This hypervisor does not check for it.
pub fn hpfar_valid(esr: Esr) -> bool {
    classify(esr).is_some_and(|fault| fault.ipa() == FaultIpa::Hpfar)
}

/// The faulting IPA when HPFAR_EL2 holds it: HPFAR_EL2.FIPA, bits [43:4], is IPA[51:12]
/// (Arm ARM HPFAR_EL2, without FEAT_D128), the byte within the page comes from
/// FAR_EL2[11:0]. On a stage-1 table walk FAR_EL2 holds the VA being translated, not the
/// descriptor's address, so only the page is known and the offset is left 0.
pub fn ipa_from_hpfar(hpfar: u64, far: u64, stage1_walk: bool) -> u64 {
    const FIPA: u64 = ((1 << 40) - 1) << 4;
    let page = (hpfar & FIPA) << 8;
    if stage1_walk {
        page
    } else {
        page | (far & 0xfff)
    }
}

/// Whether an ESR taken at EL2 (EC 0x21 instruction abort, 0x25 data abort, same EL)
/// reports a TLB conflict abort in the EL2 regime. It follows a live change of the EL2
/// tables (a block split under FEAT_BBM); the handler invalidates this PE's EL2 entries
/// (`TLBI ALLE2`, `DSB NSH`, `ISB`) and returns to retry the access.
pub fn is_el2_tlb_conflict(esr: Esr) -> bool {
    matches!(
        esr.class(),
        ExceptionClass::INSTR_ABORT_SAME | ExceptionClass::DATA_ABORT_SAME
    ) && esr.fault_status() == FSC_TLB_CONFLICT
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC_IABT_LOWER: u64 = 0x20;
    const EC_DABT_LOWER: u64 = 0x24;
    const IL: u64 = 1 << 25;
    const WNR: u64 = 1 << 6;
    const S1PTW: u64 = 1 << 7;
    const CM: u64 = 1 << 8;
    const FNV: u64 = 1 << 10;

    fn esr(class: u64, iss: u64) -> Esr {
        Esr(class << 26 | IL | iss)
    }

    fn kind(fault: Stage2Fault) -> AccessKind {
        fault.access().map(|a| a.kind).expect("an access")
    }

    #[test]
    fn each_level_encoded_family_at_each_level() {
        for level in 0..4u8 {
            let iss = u64::from(level);
            let read = |fsc: u64| classify(esr(EC_DABT_LOWER, fsc | iss)).expect("abort");
            let access = FaultAccess {
                kind: AccessKind::Read,
                stage1_walk: false,
                cache_maintenance: false,
            };
            assert_eq!(read(0x00), Stage2Fault::AddressSize { level, access });
            assert_eq!(read(0x04), Stage2Fault::Translation { level, access });
            assert_eq!(read(0x08), Stage2Fault::AccessFlag { level, access });
            assert_eq!(read(0x0c), Stage2Fault::Permission { level, access });
            assert_eq!(
                read(0x14),
                Stage2Fault::ExternalAbort {
                    walk_level: Some(level),
                    parity: false,
                    far_valid: true,
                    access
                }
            );
            assert_eq!(
                read(0x1c),
                Stage2Fault::ExternalAbort {
                    walk_level: Some(level),
                    parity: true,
                    far_valid: true,
                    access
                }
            );
        }
    }

    #[test]
    fn data_and_instruction_aborts_say_read_write_or_execute() {
        let load = classify(esr(EC_DABT_LOWER, 0x07)).expect("abort");
        let store = classify(esr(EC_DABT_LOWER, WNR | 0x07)).expect("abort");
        let fetch = classify(esr(EC_IABT_LOWER, 0x0f)).expect("abort");
        assert_eq!(kind(load), AccessKind::Read);
        assert_eq!(kind(store), AccessKind::Write);
        assert_eq!(kind(fetch), AccessKind::Execute);
        assert!(matches!(fetch, Stage2Fault::Permission { level: 3, .. }));
    }

    #[test]
    fn a_stage1_walk_for_an_instruction_fetch_is_a_read() {
        let fault = classify(esr(EC_IABT_LOWER, S1PTW | 0x06)).expect("abort");
        assert_eq!(
            fault,
            Stage2Fault::Translation {
                level: 2,
                access: FaultAccess {
                    kind: AccessKind::Read,
                    stage1_walk: true,
                    cache_maintenance: false
                }
            }
        );
        assert_eq!(fault.ipa(), FaultIpa::Hpfar);
        // WnR set on a data abort's walk is about the access, not the walk.
        let data = classify(esr(EC_DABT_LOWER, S1PTW | WNR | 0x0a)).expect("abort");
        assert_eq!(kind(data), AccessKind::Read);
    }

    #[test]
    fn a_permission_fault_on_a_stage1_walk_needs_read_and_maybe_write() {
        for class in [EC_IABT_LOWER, EC_DABT_LOWER] {
            let fault = classify(esr(class, S1PTW | 0x0f)).expect("abort");
            assert_eq!(kind(fault), AccessKind::ReadMaybeWrite);
            assert_eq!(fault.ipa(), FaultIpa::Hpfar, "R_FKLWR: S1PTW permission");
        }
    }

    #[test]
    fn cache_maintenance_with_wnr_is_a_read() {
        let fault = classify(esr(EC_DABT_LOWER, CM | WNR | 0x07)).expect("abort");
        assert_eq!(
            fault,
            Stage2Fault::Translation {
                level: 3,
                access: FaultAccess {
                    kind: AccessKind::Read,
                    stage1_walk: false,
                    cache_maintenance: true
                }
            }
        );
        let flag = classify(esr(EC_DABT_LOWER, CM | WNR | 0x0b)).expect("abort");
        assert_eq!(kind(flag), AccessKind::Read);
    }

    #[test]
    fn a_permission_fault_on_cache_maintenance_retries_only_under_read_write() {
        let fault = classify(esr(EC_DABT_LOWER, CM | WNR | 0x0f)).expect("abort");
        let kind = kind(fault);
        assert_eq!(kind, AccessKind::ReadMaybeWrite);
        assert!(kind.allowed_by(Access::READ_WRITE), "transient: retry");
        // Read-only (DC IVAC) and write-only (DC CIVAC) both explain it: no retry loop.
        assert!(!kind.allowed_by(Access::READ));
        assert!(!kind.allowed_by(Access::WRITE));
        assert!(!kind.allowed_by(Access::READ_EXECUTE));
    }

    #[test]
    fn allowed_by_checks_the_one_permission_needed() {
        assert!(AccessKind::Read.allowed_by(Access::READ));
        assert!(!AccessKind::Read.allowed_by(Access::WRITE));
        assert!(AccessKind::Write.allowed_by(Access::READ_WRITE));
        assert!(!AccessKind::Write.allowed_by(Access::READ_EXECUTE));
        assert!(AccessKind::Execute.allowed_by(Access::READ_EXECUTE));
        assert!(!AccessKind::Execute.allowed_by(Access::READ_WRITE));
        assert!(!AccessKind::Read.allowed_by(Access::NONE));
    }

    #[test]
    fn a_tlb_conflict_has_no_ipa_and_no_access() {
        for class in [EC_IABT_LOWER, EC_DABT_LOWER] {
            for extra in [0, WNR, S1PTW, CM, FNV] {
                let e = esr(class, extra | 0x30);
                let fault = classify(e).expect("abort");
                assert_eq!(fault, Stage2Fault::TlbConflict);
                assert_eq!(fault.ipa(), FaultIpa::Unknown);
                assert_eq!(fault.access(), None);
                assert!(!hpfar_valid(e));
            }
        }
    }

    #[test]
    fn hpfar_is_valid_only_where_r_fklwr_writes_it() {
        let valid = |iss| hpfar_valid(esr(EC_DABT_LOWER, iss));
        for level in 0..4 {
            assert!(valid(level), "address size");
            assert!(valid(0x04 | level), "translation");
            assert!(valid(0x08 | level), "access flag");
            assert!(!valid(0x0c | level), "permission on the access");
            assert!(valid(S1PTW | 0x0c | level), "permission on a stage-1 walk");
            assert!(!valid(0x14 | level), "external abort on a walk");
        }
        assert!(!valid(0x10));
        assert!(!valid(0x21));
        assert!(!hpfar_valid(esr(0x25, 0x07)), "EL2's own abort");
        assert!(!hpfar_valid(esr(0x16, 0x07)), "HVC");
    }

    #[test]
    fn the_ipa_comes_from_hpfar_far_or_nowhere() {
        let ipa = |iss| classify(esr(EC_DABT_LOWER, iss)).expect("abort").ipa();
        assert_eq!(ipa(0x07), FaultIpa::Hpfar);
        assert_eq!(ipa(WNR | 0x0f), FaultIpa::TranslateFar);
        assert_eq!(ipa(0x10), FaultIpa::TranslateFar);
        assert_eq!(ipa(FNV | 0x10), FaultIpa::Unknown);
        assert_eq!(ipa(0x15), FaultIpa::Unknown);
        assert_eq!(ipa(0x21), FaultIpa::TranslateFar);
    }

    #[test]
    fn external_aborts_report_far_validity() {
        let fault = classify(esr(EC_IABT_LOWER, FNV | 0x10)).expect("abort");
        assert!(matches!(
            fault,
            Stage2Fault::ExternalAbort {
                walk_level: None,
                parity: false,
                far_valid: false,
                ..
            }
        ));
        let parity = classify(esr(EC_DABT_LOWER, 0x18)).expect("abort");
        assert!(matches!(
            parity,
            Stage2Fault::ExternalAbort {
                walk_level: None,
                parity: true,
                far_valid: true,
                ..
            }
        ));
    }

    #[test]
    fn other_codes_are_kept_raw() {
        for fsc in [0x11u8, 0x13, 0x21, 0x22, 0x28, 0x29, 0x2b, 0x31, 0x35, 0x3f] {
            let fault = classify(esr(EC_DABT_LOWER, u64::from(fsc))).expect("abort");
            assert!(
                matches!(fault, Stage2Fault::Other { fsc: f, .. } if f == fsc),
                "{fsc:#x}: {fault:?}"
            );
        }
    }

    #[test]
    fn only_lower_el_aborts_are_classified() {
        for ec in (0..64u64).filter(|&ec| ec != EC_IABT_LOWER && ec != EC_DABT_LOWER) {
            assert_eq!(classify(esr(ec, 0x07)), None, "EC {ec:#x}");
        }
    }

    #[test]
    fn the_ipa_is_the_hpfar_page_and_the_far_offset() {
        let page = 0x8123_4567_u64;
        let hpfar = page << 4 | 1 << 63;
        assert_eq!(
            ipa_from_hpfar(hpfar, 0xffff_0000_0000_0abc, false),
            page << 12 | 0xabc
        );
        assert_eq!(
            ipa_from_hpfar(hpfar, 0xffff_0000_0000_0abc, true),
            page << 12
        );
        // IPA[51:12] in FIPA[43:4].
        assert_eq!(ipa_from_hpfar(u64::MAX, 0, true), ((1 << 52) - 1) & !0xfff);
    }

    #[test]
    fn el2_tlb_conflicts_are_recognised() {
        assert!(is_el2_tlb_conflict(esr(0x25, 0x30)));
        assert!(is_el2_tlb_conflict(esr(0x21, 0x30)));
        assert!(is_el2_tlb_conflict(esr(0x25, WNR | 0x30)));
        assert!(
            !is_el2_tlb_conflict(esr(0x24, 0x30)),
            "a guest's is classify's"
        );
        assert!(!is_el2_tlb_conflict(esr(0x25, 0x07)));
        assert!(!is_el2_tlb_conflict(esr(0x16, 0x30)));
    }

    proptest::proptest! {
        #[test]
        fn classify_never_panics_and_executes_only_instruction_fetches(raw: u64) {
            let e = Esr(raw);
            let class = e.class().0;
            let fault = classify(e);
            proptest::prop_assert_eq!(fault.is_some(), class == 0x20 || class == 0x24);
            if let Some(fault) = fault {
                let _ = fault.ipa();
                let _ = hpfar_valid(e);
                if let Some(access) = fault.access() {
                    proptest::prop_assert_eq!(
                        access.kind == AccessKind::Execute,
                        class == 0x20 && !e.stage1_walk()
                    );
                    proptest::prop_assert!(!(class == 0x20 && access.cache_maintenance));
                }
                match fault {
                    Stage2Fault::AddressSize { level, .. }
                    | Stage2Fault::Translation { level, .. }
                    | Stage2Fault::AccessFlag { level, .. }
                    | Stage2Fault::Permission { level, .. } => proptest::prop_assert!(level <= 3),
                    _ => {}
                }
                if fault == Stage2Fault::TlbConflict {
                    proptest::prop_assert_eq!(fault.ipa(), FaultIpa::Unknown);
                }
            }
        }

        #[test]
        fn classify_covers_every_fault_status_code(fsc in 0u64..64, extra in 0u64..(1 << 19), instruction: bool) {
            let class = if instruction { EC_IABT_LOWER } else { EC_DABT_LOWER };
            let e = esr(class, extra << 6 | fsc);
            proptest::prop_assert!(classify(e).is_some());
        }
    }
}
