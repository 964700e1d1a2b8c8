//! Circular queue index arithmetic (IHI 0070 §3.5 "Command and Event queues",
//! "SMMU_CMDQ_PROD/CONS", "SMMU_EVENTQ_PROD/CONS"): PROD and CONS hold an index below
//! 2^LOG2SIZE and a wrap bit at bit LOG2SIZE, which flips on every lap. Equal index
//! and wrap: empty; equal index, different wrap: full.
//!
//! Above the wrap bit the registers carry other things: CMDQ_CONS.ERR \[30:24\] (why the
//! SMMU stopped at the command CONS points to), EVTQ_PROD.OVFLG \[31\] (the SMMU dropped
//! events because the queue was full) and EVTQ_CONS.OVACKFLG \[31\] (software has seen
//! that). Every function here looks at the wrap and index bits only, unless it says
//! otherwise.
//!
//! The command queue: software writes entries at PROD, then PROD (after a barrier that
//! makes the entries visible to the SMMU); the SMMU moves CONS past each command it has
//! consumed. A CMD_SYNC at position `p` has completed when CONS has moved past `p`
//! ([`QueueGeometry::has_consumed`]) or CONS.ERR / GERROR.CMDQ_ERR report a stop. The
//! event queue: the SMMU writes at PROD; software reads at CONS and writes CONS back.

/// Bytes in a command-queue entry.
pub const COMMAND_BYTES: u64 = 16;
/// Bytes in an event-queue entry.
pub const EVENT_BYTES: u64 = 32;
/// The largest LOG2SIZE (IDR1.CMDQS and EVENTQS are at most 19).
pub const MAX_LOG2SIZE: u8 = 19;

/// CMDQ_CONS.ERR, bits \[30:24\].
const CONS_ERR_SHIFT: u32 = 24;
const CONS_ERR_MASK: u32 = 0x7f;
/// EVTQ_PROD.OVFLG / EVTQ_CONS.OVACKFLG, bit 31.
const OVERFLOW_FLAG: u32 = 1 << 31;
/// Q_BASE: RA/WA \[62\], ADDR \[51:5\], LOG2SIZE \[4:0\].
const BASE_ALLOCATE: u64 = 1 << 62;
const BASE_ADDR_MASK: u64 = ((1 << 52) - 1) & !0x1f;

/// A queue of 2^log2size entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueGeometry {
    log2size: u8,
}

/// Why a queue base register cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MisalignedQueue {
    /// The queue's address.
    pub addr: u64,
    /// The alignment required: the queue's size, at least 32 bytes.
    pub align: u64,
}

impl QueueGeometry {
    /// A queue of 2^`log2size` entries, `None` above [`MAX_LOG2SIZE`].
    pub const fn new(log2size: u8) -> Option<Self> {
        if log2size > MAX_LOG2SIZE {
            None
        } else {
            Some(Self { log2size })
        }
    }

    /// LOG2SIZE.
    pub const fn log2size(&self) -> u8 {
        self.log2size
    }

    /// Entries in the queue.
    pub const fn entries(&self) -> u32 {
        1 << self.log2size
    }

    /// The wrap bit and the index, without the flags above them.
    pub const fn position(&self, pointer: u32) -> u32 {
        pointer & ((2 << self.log2size) - 1)
    }

    /// The index: which entry the pointer names.
    pub const fn index(&self, pointer: u32) -> u32 {
        pointer & (self.entries() - 1)
    }

    /// The wrap bit.
    pub const fn wrap(&self, pointer: u32) -> bool {
        pointer & self.entries() != 0
    }

    /// Entries written at PROD and not yet consumed at CONS.
    pub const fn used(&self, prod: u32, cons: u32) -> u32 {
        self.position(prod.wrapping_sub(cons))
    }

    /// Entries that can be written before the queue is full.
    pub const fn free(&self, prod: u32, cons: u32) -> u32 {
        self.entries().saturating_sub(self.used(prod, cons))
    }

    /// Nothing to consume.
    pub const fn is_empty(&self, prod: u32, cons: u32) -> bool {
        self.position(prod) == self.position(cons)
    }

    /// Nothing can be written: same index, different wrap.
    pub const fn is_full(&self, prod: u32, cons: u32) -> bool {
        self.position(prod ^ cons) == self.entries()
    }

    /// `pointer` moved on by `n` entries (wrap bit flipping as laps complete), flags
    /// dropped. `n` above the queue's size is taken modulo twice the size, as the
    /// hardware would.
    pub const fn advance(&self, pointer: u32, n: u32) -> u32 {
        self.position(pointer.wrapping_add(n))
    }

    /// Whether the consumer at `cons` has consumed the entry at `position` (a CMD_SYNC
    /// just written, say): CONS has moved past it, by 1 to the queue's size. Valid while
    /// the producer has not written more than a queue's size beyond `position` (the
    /// waiter holds the queue lock, so it has not).
    pub const fn has_consumed(&self, cons: u32, position: u32) -> bool {
        let past = self.position(cons.wrapping_sub(position));
        past >= 1 && past <= self.entries()
    }

    /// Bytes of the queue for entries of `entry_bytes`.
    pub const fn bytes(&self, entry_bytes: u64) -> u64 {
        (self.entries() as u64) * entry_bytes
    }

    /// SMMU_CMDQ_BASE or SMMU_EVENTQ_BASE for a queue at `addr` with entries of
    /// `entry_bytes`: RA/WA \[62\] set (read-allocate for commands, write-allocate for
    /// events, as Linux sets them), ADDR \[51:5\], LOG2SIZE \[4:0\].
    ///
    /// # Errors
    /// [`MisalignedQueue`] unless `addr` is aligned to the queue's size (at least 32
    /// bytes; IHI 0070 "SMMU_CMDQ_BASE": ADDR is aligned to the queue size) and below
    /// 2^52.
    pub const fn base_register(&self, addr: u64, entry_bytes: u64) -> Result<u64, MisalignedQueue> {
        let size = self.bytes(entry_bytes);
        let align = if size < 32 { 32 } else { size };
        if !align.is_power_of_two() || addr & (align - 1) != 0 || addr & !BASE_ADDR_MASK != 0 {
            return Err(MisalignedQueue { addr, align });
        }
        Ok(BASE_ALLOCATE | addr | self.log2size as u64)
    }
}

/// CMDQ_CONS.ERR: why the SMMU stopped consuming commands (with GERROR.CMDQ_ERR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// CERROR_NONE (0).
    None,
    /// CERROR_ILL (1): the command at CONS is illegal (unknown opcode, reserved field,
    /// a command the SMMU does not implement: QEMU reports CMD_TLBI_S2_IPA as illegal
    /// without stage 2). Fix or replace it (Linux turns it into a CMD_SYNC), then
    /// acknowledge GERROR.CMDQ_ERR; the SMMU restarts at CONS.
    Illegal,
    /// CERROR_ABT (2): fetching the command aborted (bad queue memory). Acknowledge to
    /// retry.
    Abort,
    /// CERROR_ATC_INV_SYNC (3): a CMD_SYNC timed out waiting for ATS invalidations (no
    /// ATS here, so not expected). Acknowledge to retry the CMD_SYNC.
    AtcInvalidationSync,
    /// Any other value: reserved or IMPLEMENTATION DEFINED (0x40-0x7f).
    Other(u8),
}

impl CommandError {
    /// Decodes CMDQ_CONS.ERR from a CMDQ_CONS value.
    pub const fn from_cons(cons: u32) -> Self {
        match ((cons >> CONS_ERR_SHIFT) & CONS_ERR_MASK) as u8 {
            0 => Self::None,
            1 => Self::Illegal,
            2 => Self::Abort,
            3 => Self::AtcInvalidationSync,
            other => Self::Other(other),
        }
    }

    /// The name the architecture gives it.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::None => "CERROR_NONE",
            Self::Illegal => "CERROR_ILL",
            Self::Abort => "CERROR_ABT",
            Self::AtcInvalidationSync => "CERROR_ATC_INV_SYNC",
            Self::Other(_) => "CERROR (reserved/IMPDEF)",
        }
    }
}

/// Whether the SMMU dropped events since software last acknowledged:
/// EVTQ_PROD.OVFLG differs from EVTQ_CONS.OVACKFLG.
pub const fn event_queue_overflowed(prod: u32, cons: u32) -> bool {
    (prod ^ cons) & OVERFLOW_FLAG != 0
}

/// The EVTQ_CONS value that consumes up to `cons_position` and acknowledges any
/// overflow PROD reports: OVACKFLG copied from OVFLG (what Linux's
/// `queue_sync_cons_ovf` writes).
pub const fn event_queue_cons(prod: u32, cons_position: u32) -> u32 {
    (prod & OVERFLOW_FLAG) | (cons_position & !OVERFLOW_FLAG)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_full_and_wrap() {
        let q = QueueGeometry::new(2).unwrap();
        assert_eq!(q.entries(), 4);
        assert!(q.is_empty(0, 0));
        assert!(q.is_full(0b100, 0), "same index, wrap differs");
        assert!(!q.is_full(0b100, 0b100));
        assert_eq!((q.used(0b100, 0), q.free(0b100, 0)), (4, 0));
        assert_eq!((q.used(0b001, 0b110), q.free(0b001, 0b110)), (3, 1));
        assert_eq!(q.advance(0b111, 1), 0b000, "the wrap bit wraps too");
        assert_eq!(q.advance(0b011, 1), 0b100);
        assert_eq!((q.index(0b110), q.wrap(0b110)), (0b10, true));
        assert_eq!(QueueGeometry::new(20), None);
    }

    #[test]
    fn flags_above_the_wrap_bit_are_ignored() {
        let q = QueueGeometry::new(4).unwrap();
        let err_cons = 1 << 24 | 3;
        assert_eq!(q.position(err_cons), 3);
        assert!(q.is_empty(3, err_cons));
        assert!(q.is_empty(1 << 31 | 5, 5));
        assert_eq!(q.used(1 << 31 | 7, 2), 5);
    }

    #[test]
    fn sync_completion() {
        let q = QueueGeometry::new(3).unwrap();
        // A CMD_SYNC written at position 6; PROD is 7.
        assert!(!q.has_consumed(5, 6));
        assert!(!q.has_consumed(6, 6), "CONS at the SYNC: not yet");
        assert!(q.has_consumed(7, 6));
        // At the end of a lap: SYNC at 15 (index 7, wrap 1); CONS wraps to 0.
        assert!(!q.has_consumed(15, 15));
        assert!(q.has_consumed(0, 15));
        // CONS with ERR set is still compared by position only.
        assert!(q.has_consumed(1 << 24 | 7, 6));
    }

    #[test]
    fn command_errors() {
        assert_eq!(CommandError::from_cons(0x0000_0005), CommandError::None);
        assert_eq!(CommandError::from_cons(1 << 24 | 5), CommandError::Illegal);
        assert_eq!(CommandError::from_cons(2 << 24), CommandError::Abort);
        assert_eq!(
            CommandError::from_cons(3 << 24),
            CommandError::AtcInvalidationSync
        );
        assert_eq!(
            CommandError::from_cons(0x7f << 24),
            CommandError::Other(0x7f)
        );
        assert_eq!(
            CommandError::from_cons(1 << 31),
            CommandError::None,
            "bit 31 is not ERR"
        );
        assert_eq!(CommandError::Illegal.name(), "CERROR_ILL");
    }

    #[test]
    fn event_overflow() {
        assert!(!event_queue_overflowed(5, 3));
        assert!(event_queue_overflowed(1 << 31 | 5, 3));
        assert!(!event_queue_overflowed(1 << 31 | 5, 1 << 31 | 3));
        assert_eq!(event_queue_cons(1 << 31 | 5, 4), 1 << 31 | 4);
        assert_eq!(event_queue_cons(5, 1 << 31 | 4), 4);
    }

    #[test]
    fn base_registers() {
        let q = QueueGeometry::new(8).unwrap();
        assert_eq!(q.bytes(COMMAND_BYTES), 4096);
        assert_eq!(
            q.base_register(0x8000_1000, COMMAND_BYTES),
            Ok(1 << 62 | 0x8000_1000 | 8)
        );
        assert_eq!(
            q.base_register(0x8000_0800, COMMAND_BYTES),
            Err(MisalignedQueue {
                addr: 0x8000_0800,
                align: 4096
            })
        );
        assert_eq!(
            q.base_register(1 << 52, EVENT_BYTES),
            Err(MisalignedQueue {
                addr: 1 << 52,
                align: 8192
            })
        );
        let tiny = QueueGeometry::new(0).unwrap();
        assert_eq!(tiny.base_register(0x20, COMMAND_BYTES), Ok(1 << 62 | 0x20));
        assert!(
            tiny.base_register(0x10, COMMAND_BYTES).is_err(),
            "at least 32 bytes"
        );
    }

    /// The model: a producer and a consumer counting entries forever, the consumer never
    /// ahead of the producer nor a queue behind.
    fn pointer(count: u64, log2size: u8) -> u32 {
        (count % (2u64 << log2size)) as u32
    }

    proptest! {
        #[test]
        fn matches_a_counting_model(log2size in 0u8..=MAX_LOG2SIZE, consumed: u64, used_frac in 0.0f64..=1.0, flags in 0u32..0x1000, step: u32) {
            let q = QueueGeometry::new(log2size).unwrap();
            let size = u64::from(q.entries());
            let used = ((size as f64) * used_frac) as u64;
            let consumed = consumed / 4; // room to add without overflow
            let produced = consumed + used;
            // Noise above the wrap bit: CONS.ERR, PROD.OVFLG.
            let noise = flags << 20;
            let prod = pointer(produced, log2size) | (noise & !((2 << log2size) - 1));
            let cons = pointer(consumed, log2size) | (noise & !((2 << log2size) - 1));
            prop_assert_eq!(u64::from(q.used(prod, cons)), used);
            prop_assert_eq!(u64::from(q.free(prod, cons)), size - used);
            prop_assert_eq!(q.is_empty(prod, cons), used == 0);
            prop_assert_eq!(q.is_full(prod, cons), used == size);
            let n = step % (q.entries() + 1);
            prop_assert_eq!(q.advance(prod, n), pointer(produced + u64::from(n), log2size));
            prop_assert!(q.index(prod) < q.entries());
            prop_assert_eq!(q.index(prod), (produced % size) as u32);
            prop_assert_eq!(q.wrap(prod), (produced / size) % 2 == 1);
        }

        #[test]
        fn sync_completion_matches_the_model(log2size in 0u8..=MAX_LOG2SIZE, base: u64, ahead_frac in 0.0f64..1.0, consumed_frac in 0.0f64..=1.0) {
            let q = QueueGeometry::new(log2size).unwrap();
            let size = u64::from(q.entries());
            let base = base / 4;
            // The SYNC is the last of `ahead + 1` entries the consumer still had to
            // read when it was written; the consumer has since read some of them.
            let ahead = ((size as f64) * ahead_frac) as u64; // < size
            let sync = base + ahead;
            let consumed = base + (((ahead + 1) as f64) * consumed_frac) as u64;
            let done = consumed > sync;
            prop_assert_eq!(q.has_consumed(pointer(consumed, log2size), pointer(sync, log2size)), done);
            // And once done, the consumer may run on up to a queue's size past it.
            let later = sync + 1 + (((size - 1) as f64) * consumed_frac) as u64;
            prop_assert!(q.has_consumed(pointer(later, log2size), pointer(sync, log2size)));
        }
    }
}
