//! The record the hypervisor writes into the crash region when it panics, so the cause
//! survives for a later reader (QEMU's monitor `pmemsave`, then `scripts/crash-decode.py`).
//!
//! Layout, little-endian, starting at the crash region's base:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `HYPCRASH` |
//! | 8 | 4 | version (1) |
//! | 12 | 4 | header size (320) |
//! | 16 | 4 | total length of the record in bytes |
//! | 20 | 4 | CRC-32 (IEEE) of the whole record with this field zero |
//! | 24 | 8 | microseconds since boot |
//! | 32 | 8 | ESR_EL2 |
//! | 40 | 8 | FAR_EL2 |
//! | 48 | 8 | ELR_EL2 |
//! | 56 | 8 | SPSR_EL2 |
//! | 64 | 248 | x0..x30 |
//! | 312 | 4 | message length M |
//! | 316 | 4 | log length L |
//! | 320 | M | the panic message (UTF-8) |
//! | 320+M | L | the last console output (UTF-8) |

pub const MAGIC: [u8; 8] = *b"HYPCRASH";
pub const VERSION: u32 = 1;
pub const HEADER_SIZE: usize = 320;
/// Longest panic message kept.
pub const MAX_MESSAGE: usize = 1024;

/// The registers at the failure (zero where there was no exception).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashRegisters {
    pub esr: u64,
    pub far: u64,
    pub elr: u64,
    pub spsr: u64,
    pub regs: [u64; 31],
}

/// The region is too small for even the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionTooSmall {
    pub needed: usize,
    pub available: usize,
}

/// Writes a crash record into `region`, truncating the message and the log (keeping the
/// newest log bytes) to fit. Returns the record's length.
///
/// # Errors
/// [`RegionTooSmall`] when `region` cannot hold the header.
pub fn write_record(
    region: &mut [u8],
    micros: u64,
    registers: &CrashRegisters,
    message: &str,
    log: (&[u8], &[u8]),
) -> Result<usize, RegionTooSmall> {
    if region.len() < HEADER_SIZE {
        return Err(RegionTooSmall {
            needed: HEADER_SIZE,
            available: region.len(),
        });
    }
    let message = &message.as_bytes()[..message.len().min(MAX_MESSAGE)];
    let message = &message[..message.len().min(region.len() - HEADER_SIZE)];
    let room_for_log = region.len() - HEADER_SIZE - message.len();
    let log_len = (log.0.len() + log.1.len()).min(room_for_log);
    let total = HEADER_SIZE + message.len() + log_len;

    let header = &mut region[..HEADER_SIZE];
    header.fill(0);
    header[0..8].copy_from_slice(&MAGIC);
    put_u32(header, 8, VERSION);
    put_u32(header, 12, HEADER_SIZE as u32);
    put_u32(header, 16, total as u32);
    put_u64(header, 24, micros);
    put_u64(header, 32, registers.esr);
    put_u64(header, 40, registers.far);
    put_u64(header, 48, registers.elr);
    put_u64(header, 56, registers.spsr);
    for (i, value) in registers.regs.iter().enumerate() {
        put_u64(header, 64 + 8 * i, *value);
    }
    put_u32(header, 312, message.len() as u32);
    put_u32(header, 316, log_len as u32);

    let body = &mut region[HEADER_SIZE..total];
    body[..message.len()].copy_from_slice(message);
    // Keep the newest `log_len` bytes of the two log slices.
    let log_out = &mut body[message.len()..];
    let skip = log.0.len() + log.1.len() - log_len;
    for (out, &byte) in log.0.iter().chain(log.1.iter()).skip(skip).enumerate() {
        log_out[out] = byte;
    }
    let crc = crc32(&region[..total]);
    put_u32(region, 20, crc);
    Ok(total)
}

fn put_u32(buffer: &mut [u8], offset: usize, value: u32) {
    buffer[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(buffer: &mut [u8], offset: usize, value: u64) {
    buffer[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`), bitwise: the crash path has no
/// room for tables and runs once.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn record_round_trips_its_fields_and_checksum() {
        let mut region = vec![0xaa; 4096];
        let regs = CrashRegisters {
            esr: 0x9600_0045,
            far: 0xdead_0000,
            elr: 0x4020_1234,
            spsr: 0x3c9,
            regs: [7; 31],
        };
        let len = write_record(
            &mut region,
            1234,
            &regs,
            "boom",
            (b"line one\n", b"line two\n"),
        )
        .expect("fits");
        assert_eq!(len, HEADER_SIZE + 4 + 18);
        assert_eq!(&region[..8], b"HYPCRASH");
        assert_eq!(
            u32::from_le_bytes(region[16..20].try_into().unwrap()) as usize,
            len
        );
        assert_eq!(&region[HEADER_SIZE..HEADER_SIZE + 4], b"boom");
        assert_eq!(&region[HEADER_SIZE + 4..len], b"line one\nline two\n");
        let stored = u32::from_le_bytes(region[20..24].try_into().unwrap());
        region[20..24].fill(0);
        assert_eq!(crc32(&region[..len]), stored);
    }

    #[test]
    fn a_small_region_keeps_the_newest_log_bytes() {
        let mut region = vec![0; HEADER_SIZE + 10];
        let len = write_record(
            &mut region,
            0,
            &CrashRegisters::default(),
            "msg",
            (b"0123456789", b"abc"),
        )
        .expect("fits");
        assert_eq!(len, HEADER_SIZE + 10);
        assert_eq!(&region[HEADER_SIZE + 3..len], b"6789abc");
    }

    #[test]
    fn a_region_smaller_than_the_header_is_refused() {
        let mut region = vec![0; 100];
        assert_eq!(
            write_record(&mut region, 0, &CrashRegisters::default(), "m", (b"", b"")),
            Err(RegionTooSmall {
                needed: HEADER_SIZE,
                available: 100
            })
        );
    }
}
