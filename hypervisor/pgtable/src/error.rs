//! The one error type of the engine.

use core::fmt;

/// Why an operation was refused or could not complete.
///
/// Every error is reported before the first descriptor of a live table is written, so the
/// tables are exactly as they were when an operation returns an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// An address or size is not a multiple of the 4 KiB granule.
    Misaligned {
        /// The offending address or size.
        value: u64,
    },
    /// The range is empty.
    EmptyRange,
    /// The input range does not fit the regime's input address size, or the output range
    /// does not fit the 48-bit output address field.
    OutOfRange {
        /// The first address that does not fit.
        addr: u64,
    },
    /// Writable and executable at once: refused at EL2 (W^X).
    WriteAndExecute,
    /// The access combination cannot be expressed in this regime (stage 1 at EL2 has no
    /// write-only, execute-only or no-access mapping).
    AccessNotExpressible,
    /// Execute permission on Device memory is refused.
    ExecutableDevice,
    /// Part of the range is already mapped to something else (other output address,
    /// attributes or flags). Mapping over an identical mapping is allowed and changes
    /// nothing.
    AlreadyMapped {
        /// The first conflicting input address.
        addr: u64,
    },
    /// Part of the range is not mapped (`change_attrs` needs every page mapped).
    NotMapped {
        /// The first unmapped input address.
        addr: u64,
    },
    /// The [`Hardware`](crate::Hardware) could not provide a table page. Nothing was
    /// changed.
    OutOfTables,
    /// The stage-2 input size or physical address size is not supported.
    UnsupportedSize {
        /// The number of address bits requested.
        bits: u8,
    },
    /// The engine found its own bookkeeping inconsistent (a bug, never caller input).
    Internal,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Misaligned { value } => write!(f, "{value:#x} is not 4 KiB aligned"),
            Error::EmptyRange => write!(f, "empty range"),
            Error::OutOfRange { addr } => write!(f, "address {addr:#x} is out of range"),
            Error::WriteAndExecute => write!(f, "writable and executable mapping refused"),
            Error::AccessNotExpressible => {
                write!(f, "access combination not expressible in this regime")
            }
            Error::ExecutableDevice => write!(f, "executable device memory refused"),
            Error::AlreadyMapped { addr } => write!(f, "{addr:#x} is already mapped differently"),
            Error::NotMapped { addr } => write!(f, "{addr:#x} is not mapped"),
            Error::OutOfTables => write!(f, "no memory for a translation table"),
            Error::UnsupportedSize { bits } => write!(f, "unsupported address size: {bits} bits"),
            Error::Internal => write!(f, "internal inconsistency in the translation tables"),
        }
    }
}

impl core::error::Error for Error {}
