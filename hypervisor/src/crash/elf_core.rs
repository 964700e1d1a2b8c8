//! The ELF core header a capture kernel reads as `elfcorehdr` (issue 18, first piece: the
//! format; the crash path that writes it and enters the capture kernel comes next).
//!
//! It follows what Linux's kdump producers write and `fs/proc/vmcore.c` reads: an ELF64
//! `ET_CORE` file header for `EM_AARCH64`, one `PT_NOTE` and one `PT_LOAD` per memory
//! range, then the notes. Unlike a core file on disk, every `p_offset` is a *physical
//! address* of the dead system: the capture kernel reads the notes and the memory from
//! there (`/proc/vmcore` stitches them into a file). The notes are:
//! - one `NT_PRSTATUS` ("CORE") per CPU, `struct elf_prstatus` as arm64 Linux lays it out
//!   (392 bytes: `pr_pid` at 32, `pr_reg` = x0..x30, sp, pc, pstate at 112), carrying the
//!   CPU's EL2 registers;
//! - one `VMCOREINFO` note (type 0) with `KEY=VALUE` lines for the decoder (the EL2 table
//!   root, the heap window, the crash record's address).
//!
//! Portable: built into a caller's buffer, no allocation, never panics on its inputs.

use core::fmt;

/// Bytes of the ELF64 file header.
pub const EHDR_BYTES: usize = 64;
/// Bytes of one ELF64 program header.
pub const PHDR_BYTES: usize = 56;
/// Bytes of arm64's `struct elf_prstatus`.
pub const PRSTATUS_BYTES: usize = 392;
/// Where `pr_reg` starts in it.
pub const PRSTATUS_REG_OFFSET: usize = 112;
/// Where `pr_pid` sits in it.
pub const PRSTATUS_PID_OFFSET: usize = 32;

const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u8 = 1;
const ET_CORE: u16 = 4;
const EM_AARCH64: u16 = 183;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PF_RWX: u32 = 7;
const NT_PRSTATUS: u32 = 1;
const VMCOREINFO_TYPE: u32 = 0;

/// One range of the dead system's memory, as the dump shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRange {
    pub phys: u64,
    /// Where the dead hypervisor saw it (its EL2 virtual address).
    pub virt: u64,
    pub size: u64,
}

/// One CPU's registers at the crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuRegisters {
    /// `pr_pid`: the CPU's index + 1 (0 reads as no task in tools).
    pub id: u32,
    pub x: [u64; 31],
    pub sp: u64,
    pub pc: u64,
    pub pstate: u64,
}

/// Why no header was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreHeaderError {
    /// The buffer has `available` bytes, the header needs `needed`.
    TooSmall { needed: usize, available: usize },
    /// An address or size does not fit the format (a range ending past 2^64).
    BadRange { index: usize },
}

impl fmt::Display for CoreHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooSmall { needed, available } => write!(
                f,
                "the ELF core header needs {needed} bytes, {available} are reserved for it"
            ),
            Self::BadRange { index } => write!(f, "memory range {index} ends past 2^64"),
        }
    }
}

/// Bytes of one note: header, name (NUL-terminated, padded to 4) and description
/// (padded to 4).
const fn note_bytes(name: &str, desc: usize) -> usize {
    12 + (name.len() + 1).next_multiple_of(4) + desc.next_multiple_of(4)
}

/// Bytes the header takes for `ranges` memory ranges, `cpus` CPUs and a VMCOREINFO text
/// of `info` bytes.
pub const fn header_bytes(ranges: usize, cpus: usize, info: usize) -> usize {
    EHDR_BYTES
        + (1 + ranges) * PHDR_BYTES
        + cpus * note_bytes("CORE", PRSTATUS_BYTES)
        + note_bytes("VMCOREINFO", info)
}

/// Writes the header into `buffer`, which will sit at physical address `at` (the notes'
/// `p_offset` point into it). Returns the bytes written.
///
/// # Errors
/// [`CoreHeaderError::TooSmall`] or [`CoreHeaderError::BadRange`]; `buffer` is then
/// untouched.
pub fn write_core_header(
    buffer: &mut [u8],
    at: u64,
    ranges: &[MemoryRange],
    cpus: &[CpuRegisters],
    vmcoreinfo: &str,
) -> Result<usize, CoreHeaderError> {
    let needed = header_bytes(ranges.len(), cpus.len(), vmcoreinfo.len());
    if buffer.len() < needed {
        return Err(CoreHeaderError::TooSmall {
            needed,
            available: buffer.len(),
        });
    }
    if let Some(index) = ranges
        .iter()
        .position(|r| r.phys.checked_add(r.size).is_none() || r.virt.checked_add(r.size).is_none())
    {
        return Err(CoreHeaderError::BadRange { index });
    }
    let buffer = &mut buffer[..needed];
    buffer.fill(0);
    let phnum = 1 + ranges.len();
    let notes_at = EHDR_BYTES + phnum * PHDR_BYTES;
    let notes_len = needed - notes_at;

    let mut w = Writer { buffer, at: 0 };
    // e_ident: magic, 64-bit, little endian, version 1, System V ABI.
    w.bytes(&[
        0x7f,
        b'E',
        b'L',
        b'F',
        ELFCLASS64,
        ELFDATA2LSB,
        EV_CURRENT,
        0,
    ]);
    w.bytes(&[0; 8]);
    w.u16(ET_CORE);
    w.u16(EM_AARCH64);
    w.u32(u32::from(EV_CURRENT));
    w.u64(0); // e_entry
    w.u64(EHDR_BYTES as u64); // e_phoff
    w.u64(0); // e_shoff
    w.u32(0); // e_flags
    w.u16(EHDR_BYTES as u16);
    w.u16(PHDR_BYTES as u16);
    w.u16(phnum as u16);
    w.u16(0); // e_shentsize
    w.u16(0); // e_shnum
    w.u16(0); // e_shstrndx

    // PT_NOTE: the notes, right after the program headers, read from physical memory.
    w.phdr(ProgramHeader {
        kind: PT_NOTE,
        flags: 0,
        offset: at + notes_at as u64,
        vaddr: 0,
        paddr: 0,
        size: notes_len as u64,
    });
    for range in ranges {
        w.phdr(ProgramHeader {
            kind: PT_LOAD,
            flags: PF_RWX,
            offset: range.phys,
            vaddr: range.virt,
            paddr: range.phys,
            size: range.size,
        });
    }

    for cpu in cpus {
        w.note_header("CORE", PRSTATUS_BYTES, NT_PRSTATUS);
        let desc = w.at;
        w.at = desc + PRSTATUS_PID_OFFSET;
        w.u32(cpu.id);
        w.at = desc + PRSTATUS_REG_OFFSET;
        for &x in &cpu.x {
            w.u64(x);
        }
        w.u64(cpu.sp);
        w.u64(cpu.pc);
        w.u64(cpu.pstate);
        w.at = desc + PRSTATUS_BYTES;
    }
    w.note_header("VMCOREINFO", vmcoreinfo.len(), VMCOREINFO_TYPE);
    w.bytes(vmcoreinfo.as_bytes());
    Ok(needed)
}

/// One program header (file and memory sizes are equal here).
struct ProgramHeader {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    size: u64,
}

/// Sequential little-endian stores into a buffer known to be large enough.
struct Writer<'b> {
    buffer: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) {
        if let Some(slot) = self.buffer.get_mut(self.at..self.at + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
        self.at += bytes.len();
    }

    fn u16(&mut self, value: u16) {
        self.bytes(&value.to_le_bytes());
    }

    fn u32(&mut self, value: u32) {
        self.bytes(&value.to_le_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.bytes(&value.to_le_bytes());
    }

    fn phdr(&mut self, header: ProgramHeader) {
        self.u32(header.kind);
        self.u32(header.flags);
        self.u64(header.offset);
        self.u64(header.vaddr);
        self.u64(header.paddr);
        self.u64(header.size);
        self.u64(header.size);
        self.u64(if header.kind == PT_LOAD { 4096 } else { 0 }); // p_align
    }

    /// A note's header and name; the description follows, padded to 4 (the buffer was
    /// zeroed, so skipping the padding writes it).
    fn note_header(&mut self, name: &str, desc: usize, kind: u32) {
        self.u32((name.len() + 1) as u32);
        self.u32(desc as u32);
        self.u32(kind);
        let name_at = self.at;
        self.bytes(name.as_bytes());
        self.at = name_at + (name.len() + 1).next_multiple_of(4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// (name, type, description) of every note in `notes`, as vmcore.c walks them.
    fn notes(notes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 12 <= notes.len() {
            let (namesz, descsz, kind) = (
                u32_at(notes, at) as usize,
                u32_at(notes, at + 4) as usize,
                u32_at(notes, at + 8),
            );
            let name_at = at + 12;
            let desc_at = name_at + namesz.next_multiple_of(4);
            let name = String::from_utf8(notes[name_at..name_at + namesz - 1].to_vec()).unwrap();
            out.push((name, kind, notes[desc_at..desc_at + descsz].to_vec()));
            at = desc_at + descsz.next_multiple_of(4);
        }
        out
    }

    fn cpu(id: u32) -> CpuRegisters {
        let mut x = [0u64; 31];
        for (i, r) in x.iter_mut().enumerate() {
            *r = 0x1000 * u64::from(id) + i as u64;
        }
        CpuRegisters {
            id,
            x,
            sp: 0xdead_5000,
            pc: 0x4020_1234,
            pstate: 0x3c9,
        }
    }

    #[test]
    fn the_header_reads_back_as_linux_vmcore_reads_it() {
        let ranges = [
            MemoryRange {
                phys: 0x4020_0000,
                virt: 0x4020_0000,
                size: 0x20_0000,
            },
            MemoryRange {
                phys: 0xbe00_0000,
                virt: 0xff00_0000_0000,
                size: 0x40_0000,
            },
        ];
        let cpus = [cpu(1), cpu(2)];
        let info = "EL2_TTBR0=0xbe001000\nCRASH_RECORD=0xbf000000\n";
        let mut buffer = vec![0xaa; 4096];
        let at = 0xbf10_0000;
        let n = write_core_header(&mut buffer, at, &ranges, &cpus, info).unwrap();
        assert_eq!(n, header_bytes(2, 2, info.len()));
        let b = &buffer[..n];
        assert_eq!(&b[..4], b"\x7fELF");
        assert_eq!((b[4], b[5], b[6]), (2, 1, 1));
        assert_eq!(u16_at(b, 16), 4, "ET_CORE");
        assert_eq!(u16_at(b, 18), 183, "EM_AARCH64");
        assert_eq!(u64_at(b, 32), 64, "e_phoff");
        assert_eq!((u16_at(b, 52), u16_at(b, 54), u16_at(b, 56)), (64, 56, 3));
        // PT_NOTE first, at the physical address of the notes.
        let note = &b[64..120];
        assert_eq!(u32_at(note, 0), 4);
        let notes_at = 64 + 3 * 56;
        assert_eq!(u64_at(note, 8), at + notes_at as u64);
        assert_eq!(u64_at(note, 32) as usize, n - notes_at);
        // The PT_LOADs, p_offset = p_paddr = the physical address.
        for (i, range) in ranges.iter().enumerate() {
            let ph = &b[120 + i * 56..176 + i * 56];
            assert_eq!(u32_at(ph, 0), 1);
            assert_eq!(u64_at(ph, 8), range.phys);
            assert_eq!(u64_at(ph, 16), range.virt);
            assert_eq!(u64_at(ph, 24), range.phys);
            assert_eq!((u64_at(ph, 32), u64_at(ph, 40)), (range.size, range.size));
        }
        let found = notes(&b[notes_at..]);
        assert_eq!(found.len(), 3);
        for (i, (name, kind, desc)) in found[..2].iter().enumerate() {
            assert_eq!(
                (name.as_str(), *kind, desc.len()),
                ("CORE", 1, PRSTATUS_BYTES)
            );
            assert_eq!(u32_at(desc, PRSTATUS_PID_OFFSET), cpus[i].id);
            for r in 0..31 {
                assert_eq!(u64_at(desc, PRSTATUS_REG_OFFSET + 8 * r), cpus[i].x[r]);
            }
            assert_eq!(u64_at(desc, PRSTATUS_REG_OFFSET + 8 * 31), cpus[i].sp);
            assert_eq!(u64_at(desc, PRSTATUS_REG_OFFSET + 8 * 32), cpus[i].pc);
            assert_eq!(u64_at(desc, PRSTATUS_REG_OFFSET + 8 * 33), cpus[i].pstate);
        }
        assert_eq!(found[2].0, "VMCOREINFO");
        assert_eq!(found[2].1, 0);
        assert_eq!(found[2].2, info.as_bytes());
        // Nothing past what it says it wrote.
        assert!(buffer[n..].iter().all(|&byte| byte == 0xaa));
    }

    #[test]
    fn a_small_buffer_or_a_wrapping_range_is_refused_untouched() {
        let mut buffer = vec![0x55; 100];
        assert_eq!(
            write_core_header(&mut buffer, 0, &[], &[cpu(1)], ""),
            Err(CoreHeaderError::TooSmall {
                needed: header_bytes(0, 1, 0),
                available: 100
            })
        );
        assert!(buffer.iter().all(|&b| b == 0x55));
        let mut buffer = vec![0x55; 4096];
        let wrapping = [MemoryRange {
            phys: u64::MAX - 10,
            virt: 0,
            size: 0x1000,
        }];
        assert_eq!(
            write_core_header(&mut buffer, 0, &wrapping, &[], ""),
            Err(CoreHeaderError::BadRange { index: 0 })
        );
        assert!(buffer.iter().all(|&b| b == 0x55));
    }

    proptest! {
        #[test]
        fn any_inputs_write_exactly_the_size_they_announce(
            ranges in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 0..8),
            cpus in 0usize..8,
            info in "[ -~\n]{0,200}",
            slack in 0usize..64,
        ) {
            let ranges: Vec<MemoryRange> = ranges
                .into_iter()
                .map(|(phys, virt, size)| MemoryRange { phys, virt, size })
                .collect();
            let cpus: Vec<CpuRegisters> = (0..cpus as u32).map(cpu).collect();
            let needed = header_bytes(ranges.len(), cpus.len(), info.len());
            let mut buffer = vec![0u8; needed + slack];
            match write_core_header(&mut buffer, 0x1000, &ranges, &cpus, &info) {
                Ok(n) => {
                    prop_assert_eq!(n, needed);
                    let notes_at = EHDR_BYTES + (1 + ranges.len()) * PHDR_BYTES;
                    let found = notes(&buffer[notes_at..n]);
                    prop_assert_eq!(found.len(), cpus.len() + 1);
                    prop_assert_eq!(found.last().map(|n| n.2.clone()), Some(info.as_bytes().to_vec()));
                }
                Err(CoreHeaderError::BadRange { index }) => {
                    let r = ranges[index];
                    prop_assert!(r.phys.checked_add(r.size).is_none() || r.virt.checked_add(r.size).is_none());
                }
                Err(other) => prop_assert!(false, "{other}"),
            }
        }
    }
}
