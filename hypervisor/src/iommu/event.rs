//! Event queue records (IHI 0070 §7.3 "Event records"): decoding a 32-byte record into
//! what the log line needs. Nothing here trusts the record: any 256 bits decode (an
//! unknown type becomes [`EventKind::Unknown`]) and nothing panics.
//!
//! | word | bits | field |
//! |---|---|---|
//! | 0 | \[7:0\] | event type |
//! | 0 | \[11\] | SSV: SubstreamID valid |
//! | 0 | \[31:12\] | SubstreamID |
//! | 0 | \[63:32\] | StreamID |
//! | 1 | \[15:0\] | STAG (stall tag) |
//! | 1 | \[31\] | Stall |
//! | 1 | \[33\] | PnU: privileged (1) or unprivileged |
//! | 1 | \[34\] | InD: instruction (1) or data |
//! | 1 | \[35\] | RnW: read (1) or write |
//! | 1 | \[39\] | S2: the fault is a stage-2 one |
//! | 1 | \[41:40\] | CLASS: what was being translated (CD, TT, IN) |
//! | 2 | \[63:0\] | InputAddr: the address the device used |
//! | 3 | \[51:12\] | IPA (stage-2 faults), or FetchAddr \[51:3\] of a failed STE/table fetch |
//!
//! For a stage-2-only stream (Config 0b110) the input address is the IPA itself; the
//! IPA word repeats it for stage-2 faults (QEMU versions without nesting may leave it
//! 0, so the log line shows both).

use core::fmt;

/// The event types this decoder names (IHI 0070 §7.3.x), by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// 0x01: unsupported upstream transaction.
    UnsupportedUpstreamTransaction,
    /// 0x02 C_BAD_STREAMID: StreamID beyond the stream table, or in a two-level group
    /// without an L2 table (every unassigned device lands here or in an abort STE).
    BadStreamId,
    /// 0x03 F_STE_FETCH: fetching the STE aborted.
    SteFetch,
    /// 0x04 C_BAD_STE: the STE is invalid or inconsistent.
    BadSte,
    /// 0x05 F_BAD_ATS_TREQ.
    BadAtsRequest,
    /// 0x06 F_STREAM_DISABLED.
    StreamDisabled,
    /// 0x07 F_TRANSL_FORBIDDEN.
    TranslationForbidden,
    /// 0x08 C_BAD_SUBSTREAMID.
    BadSubstreamId,
    /// 0x09 F_CD_FETCH.
    CdFetch,
    /// 0x0A C_BAD_CD.
    BadCd,
    /// 0x0B F_WALK_EABT: a table walk read aborted.
    WalkExternalAbort,
    /// 0x10 F_TRANSLATION: no valid entry (unmapped IPA, or an entry broken for
    /// break-before-make).
    Translation,
    /// 0x11 F_ADDR_SIZE: an address beyond the input or output size.
    AddressSize,
    /// 0x12 F_ACCESS: Access flag 0.
    Access,
    /// 0x13 F_PERMISSION: S2AP/XN forbid the access.
    Permission,
    /// 0x20 F_TLB_CONFLICT: overlapping TLB entries (a block resized in place without
    /// BBML2).
    TlbConflict,
    /// 0x21 F_CFG_CONFLICT: overlapping configuration-cache entries.
    ConfigConflict,
    /// 0x24 E_PAGE_REQUEST.
    PageRequest,
    /// 0x25 F_VMS_FETCH.
    VmsFetch,
    /// Anything else (reserved, or IMPLEMENTATION DEFINED 0xE0-0xEF).
    Unknown(u8),
}

impl EventKind {
    /// The kind of event type `code`.
    pub const fn from_code(code: u8) -> Self {
        match code {
            0x01 => Self::UnsupportedUpstreamTransaction,
            0x02 => Self::BadStreamId,
            0x03 => Self::SteFetch,
            0x04 => Self::BadSte,
            0x05 => Self::BadAtsRequest,
            0x06 => Self::StreamDisabled,
            0x07 => Self::TranslationForbidden,
            0x08 => Self::BadSubstreamId,
            0x09 => Self::CdFetch,
            0x0A => Self::BadCd,
            0x0B => Self::WalkExternalAbort,
            0x10 => Self::Translation,
            0x11 => Self::AddressSize,
            0x12 => Self::Access,
            0x13 => Self::Permission,
            0x20 => Self::TlbConflict,
            0x21 => Self::ConfigConflict,
            0x24 => Self::PageRequest,
            0x25 => Self::VmsFetch,
            other => Self::Unknown(other),
        }
    }

    /// The architecture's name.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::UnsupportedUpstreamTransaction => "F_UUT",
            Self::BadStreamId => "C_BAD_STREAMID",
            Self::SteFetch => "F_STE_FETCH",
            Self::BadSte => "C_BAD_STE",
            Self::BadAtsRequest => "F_BAD_ATS_TREQ",
            Self::StreamDisabled => "F_STREAM_DISABLED",
            Self::TranslationForbidden => "F_TRANSL_FORBIDDEN",
            Self::BadSubstreamId => "C_BAD_SUBSTREAMID",
            Self::CdFetch => "F_CD_FETCH",
            Self::BadCd => "C_BAD_CD",
            Self::WalkExternalAbort => "F_WALK_EABT",
            Self::Translation => "F_TRANSLATION",
            Self::AddressSize => "F_ADDR_SIZE",
            Self::Access => "F_ACCESS",
            Self::Permission => "F_PERMISSION",
            Self::TlbConflict => "F_TLB_CONFLICT",
            Self::ConfigConflict => "F_CFG_CONFLICT",
            Self::PageRequest => "E_PAGE_REQUEST",
            Self::VmsFetch => "F_VMS_FETCH",
            Self::Unknown(_) => "unknown event",
        }
    }

    /// The four translation faults and F_WALK_EABT: records with RnW/InD/PnU, S2,
    /// CLASS, the input address and the IPA word.
    const fn is_translation_fault(&self) -> bool {
        matches!(
            self,
            Self::WalkExternalAbort
                | Self::Translation
                | Self::AddressSize
                | Self::Access
                | Self::Permission
        )
    }

    /// Records whose word 2 is the input address.
    const fn has_input_address(&self) -> bool {
        self.is_translation_fault()
            || matches!(
                self,
                Self::UnsupportedUpstreamTransaction
                    | Self::TranslationForbidden
                    | Self::BadAtsRequest
                    | Self::TlbConflict
            )
    }

    /// Records that say whether the access was a read or a write.
    const fn has_access(&self) -> bool {
        self.is_translation_fault()
            || matches!(
                self,
                Self::UnsupportedUpstreamTransaction
                    | Self::TranslationForbidden
                    | Self::TlbConflict
            )
    }

    /// Records whose word 3 is the physical address of a failed fetch.
    const fn has_fetch_address(&self) -> bool {
        matches!(
            self,
            Self::SteFetch | Self::WalkExternalAbort | Self::VmsFetch
        )
    }
}

/// CLASS: which translation step faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultClass {
    /// 0b00: fetching a context descriptor (stage 1 only).
    ContextDescriptor,
    /// 0b01: a translation-table walk (the IPA of a stage-1 table read, or the stage-2
    /// walk itself).
    TableWalk,
    /// 0b10: the input address itself.
    Input,
    /// 0b11: reserved.
    Reserved,
}

/// The access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessKind {
    /// RnW: a read (else a write).
    pub read: bool,
    /// InD: an instruction fetch (else data).
    pub instruction: bool,
    /// PnU: privileged (else unprivileged).
    pub privileged: bool,
}

/// One decoded event record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuEvent {
    /// The event type.
    pub kind: EventKind,
    /// The device's StreamID.
    pub stream_id: u32,
    /// The SubstreamID, when SSV says it is valid.
    pub substream_id: Option<u32>,
    /// The address the device used, for records that carry it.
    pub input_address: Option<u64>,
    /// The faulting IPA, for stage-2 translation faults (S2 = 1).
    pub ipa: Option<u64>,
    /// The physical address of a failed STE or table fetch.
    pub fetch_address: Option<u64>,
    /// Read/write, instruction/data, privileged/unprivileged, for records that carry it.
    pub access: Option<AccessKind>,
    /// S2: the fault belongs to stage 2 (only meaningful for translation faults).
    pub stage2: bool,
    /// CLASS, for translation faults.
    pub class: Option<FaultClass>,
    /// Stall: the transaction waits for CMD_RESUME (never with S2S = 0).
    pub stalled: bool,
}

const SSV: u64 = 1 << 11;
const STALL: u64 = 1 << 31;
const PNU: u64 = 1 << 33;
const IND: u64 = 1 << 34;
const RNW: u64 = 1 << 35;
const S2: u64 = 1 << 39;
const CLASS_SHIFT: u32 = 40;
/// Word 3: IPA \[51:12\].
const IPA_MASK: u64 = ((1 << 52) - 1) & !0xfff;
/// Word 3: FetchAddr \[51:3\].
const FETCH_MASK: u64 = ((1 << 52) - 1) & !0x7;

impl SmmuEvent {
    /// Decodes a record read from the event queue (words in order, each little-endian).
    pub const fn decode(record: [u64; 4]) -> Self {
        let [w0, w1, w2, w3] = record;
        let kind = EventKind::from_code(w0 as u8);
        let fault = kind.is_translation_fault();
        let stage2 = fault && w1 & S2 != 0;
        SmmuEvent {
            kind,
            stream_id: (w0 >> 32) as u32,
            substream_id: if w0 & SSV != 0 {
                Some(((w0 >> 12) & 0xf_ffff) as u32)
            } else {
                None
            },
            input_address: if kind.has_input_address() {
                Some(w2)
            } else {
                None
            },
            ipa: if stage2 && !matches!(kind, EventKind::WalkExternalAbort) {
                Some(w3 & IPA_MASK)
            } else {
                None
            },
            fetch_address: if kind.has_fetch_address() {
                Some(w3 & FETCH_MASK)
            } else {
                None
            },
            access: if kind.has_access() {
                Some(AccessKind {
                    read: w1 & RNW != 0,
                    instruction: w1 & IND != 0,
                    privileged: w1 & PNU != 0,
                })
            } else {
                None
            },
            stage2,
            class: if fault {
                Some(match (w1 >> CLASS_SHIFT) & 0b11 {
                    0b00 => FaultClass::ContextDescriptor,
                    0b01 => FaultClass::TableWalk,
                    0b10 => FaultClass::Input,
                    _ => FaultClass::Reserved,
                })
            } else {
                None
            },
            stalled: fault && w1 & STALL != 0,
        }
    }
}

impl fmt::Display for SmmuEvent {
    /// One log line, e.g. `SMMU event F_TRANSLATION (0x10): stream 0x8, write data
    /// unprivileged, input 0x80001000, IPA 0x80001000, stage 2, class TT`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = event_code(self.kind);
        write!(
            f,
            "SMMU event {} ({code:#04x}): stream {:#x}",
            self.kind.name(),
            self.stream_id
        )?;
        if let Some(ssid) = self.substream_id {
            write!(f, " substream {ssid:#x}")?;
        }
        if let Some(access) = self.access {
            write!(
                f,
                ", {} {} {}",
                if access.read { "read" } else { "write" },
                if access.instruction {
                    "instruction"
                } else {
                    "data"
                },
                if access.privileged {
                    "privileged"
                } else {
                    "unprivileged"
                }
            )?;
        }
        if let Some(input) = self.input_address {
            write!(f, ", input {input:#x}")?;
        }
        if let Some(ipa) = self.ipa {
            write!(f, ", IPA {ipa:#x}")?;
        }
        if let Some(fetch) = self.fetch_address {
            write!(f, ", fetch PA {fetch:#x}")?;
        }
        if let Some(class) = self.class {
            let class = match class {
                FaultClass::ContextDescriptor => "CD",
                FaultClass::TableWalk => "TT",
                FaultClass::Input => "IN",
                FaultClass::Reserved => "reserved",
            };
            write!(
                f,
                ", stage {}, class {class}",
                if self.stage2 { 2 } else { 1 }
            )?;
        }
        if self.stalled {
            f.write_str(", stalled")?;
        }
        Ok(())
    }
}

/// The number of a known event kind (the inverse of [`EventKind::from_code`]).
const fn event_code(kind: EventKind) -> u8 {
    match kind {
        EventKind::UnsupportedUpstreamTransaction => 0x01,
        EventKind::BadStreamId => 0x02,
        EventKind::SteFetch => 0x03,
        EventKind::BadSte => 0x04,
        EventKind::BadAtsRequest => 0x05,
        EventKind::StreamDisabled => 0x06,
        EventKind::TranslationForbidden => 0x07,
        EventKind::BadSubstreamId => 0x08,
        EventKind::CdFetch => 0x09,
        EventKind::BadCd => 0x0A,
        EventKind::WalkExternalAbort => 0x0B,
        EventKind::Translation => 0x10,
        EventKind::AddressSize => 0x11,
        EventKind::Access => 0x12,
        EventKind::Permission => 0x13,
        EventKind::TlbConflict => 0x20,
        EventKind::ConfigConflict => 0x21,
        EventKind::PageRequest => 0x24,
        EventKind::VmsFetch => 0x25,
        EventKind::Unknown(code) => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// A stage-2 F_TRANSLATION as QEMU's `smmuv3_record_event` writes it: type, SID in
    /// word 0; S2, RnW = 0 (write), CLASS IN in word 1; the address in word 2, the IPA
    /// in word 3.
    fn translation_fault() -> [u64; 4] {
        [
            0x10 | 0x8 << 32,
            1 << 39 | 0b10 << 40,
            0x8000_1234,
            0x8000_1000,
        ]
    }

    #[test]
    fn stage2_translation_fault() {
        let e = SmmuEvent::decode(translation_fault());
        assert_eq!(e.kind, EventKind::Translation);
        assert_eq!(e.stream_id, 8);
        assert_eq!(e.substream_id, None);
        assert_eq!(e.input_address, Some(0x8000_1234));
        assert_eq!(e.ipa, Some(0x8000_1000));
        assert_eq!(e.fetch_address, None);
        assert_eq!(
            e.access,
            Some(AccessKind {
                read: false,
                instruction: false,
                privileged: false
            })
        );
        assert!(e.stage2 && !e.stalled);
        assert_eq!(e.class, Some(FaultClass::Input));
        assert_eq!(
            e.to_string(),
            "SMMU event F_TRANSLATION (0x10): stream 0x8, write data unprivileged, \
             input 0x80001234, IPA 0x80001000, stage 2, class IN"
        );
    }

    #[test]
    fn access_bits() {
        let mut r = translation_fault();
        r[0] = 0x13 | 1 << 11 | 0x5 << 12 | 0x1_0000_0000;
        r[1] |= 1 << 33 | 1 << 34 | 1 << 35 | 1 << 31;
        let e = SmmuEvent::decode(r);
        assert_eq!(e.kind, EventKind::Permission);
        assert_eq!(e.substream_id, Some(5));
        assert_eq!(
            e.access,
            Some(AccessKind {
                read: true,
                instruction: true,
                privileged: true
            })
        );
        assert!(e.stalled);
        assert!(e.to_string().contains("read instruction privileged"));
    }

    #[test]
    fn stage1_fault_has_no_ipa() {
        let mut r = translation_fault();
        r[1] &= !(1 << 39);
        let e = SmmuEvent::decode(r);
        assert!(!e.stage2);
        assert_eq!(e.ipa, None);
        assert!(e.to_string().ends_with("stage 1, class IN"));
    }

    #[test]
    fn configuration_events() {
        let e = SmmuEvent::decode([0x02 | 0x1234 << 32, u64::MAX, u64::MAX, u64::MAX]);
        assert_eq!(e.kind, EventKind::BadStreamId);
        assert_eq!(
            (e.input_address, e.ipa, e.access, e.class),
            (None, None, None, None)
        );
        assert!(!e.stage2 && !e.stalled);
        assert_eq!(
            e.to_string(),
            "SMMU event C_BAD_STREAMID (0x02): stream 0x1234"
        );
        let fetch = SmmuEvent::decode([0x03, 0, 0, 0x8000_0047]);
        assert_eq!(fetch.fetch_address, Some(0x8000_0040));
        assert!(fetch.to_string().contains("fetch PA 0x80000040"));
        assert_eq!(SmmuEvent::decode([0x04, 0, 0, 0]).kind, EventKind::BadSte);
    }

    #[test]
    fn walk_abort_has_a_fetch_address_not_an_ipa() {
        let e = SmmuEvent::decode([0x0b, 1 << 39 | 0b01 << 40, 0x1000, 0x4000_2008]);
        assert_eq!((e.ipa, e.fetch_address), (None, Some(0x4000_2008)));
        assert_eq!(e.class, Some(FaultClass::TableWalk));
    }

    #[test]
    fn every_known_code_round_trips() {
        for code in 0..=u8::MAX {
            let kind = EventKind::from_code(code);
            assert_eq!(event_code(kind), code);
            if !matches!(kind, EventKind::Unknown(_)) {
                assert!(kind.name().starts_with(['F', 'C', 'E']));
            }
        }
        assert_eq!(EventKind::from_code(0x20), EventKind::TlbConflict);
        assert_eq!(EventKind::from_code(0xe0), EventKind::Unknown(0xe0));
        assert!(
            SmmuEvent::decode([0xe0, 0, 0, 0])
                .to_string()
                .contains("(0xe0)")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_record_decodes_and_formats(record: [u64; 4]) {
            let e = SmmuEvent::decode(record);
            proptest::prop_assert_eq!(e.stream_id, (record[0] >> 32) as u32);
            proptest::prop_assert_eq!(event_code(e.kind), record[0] as u8);
            let line = e.to_string();
            proptest::prop_assert!(line.starts_with("SMMU event "));
            if let Some(ipa) = e.ipa {
                proptest::prop_assert!(e.stage2 && ipa & 0xfff == 0 && ipa >> 52 == 0);
            }
        }
    }
}
