//! The 64-byte header of an arm64 Linux `Image` (Documentation/arch/arm64/booting.rst):
//!
//! | offset | field |
//! |---|---|
//! | 0x00 | code0, code1 (executable; "MZ" when the kernel has an EFI stub) |
//! | 0x08 | `text_offset`, little-endian |
//! | 0x10 | `image_size`, little-endian: bytes the kernel needs from its start (with BSS) |
//! | 0x18 | `flags`: bit 0 big-endian, bits 1-2 page size, bit 3 physical placement |
//! | 0x20 | res2..res4 |
//! | 0x38 | magic `"ARM\x64"` |
//! | 0x3c | res5 (PE header offset) |
//!
//! The hypervisor can only start an uncompressed, little-endian, 4K-page Image that says
//! how much memory it needs, so everything else is rejected here with a message that
//! names what the file actually is (gzip, EFI zboot, ELF vmlinux, U-Boot uImage, ...).
//!
//! **Pre-3.17 kernels (`image_size == 0`) are rejected.** Their footprint is unknown:
//! the file lacks the BSS, whose size no margin can bound safely, and guessing wrong
//! would let the kernel clear our DTB or initrd. Every kernel since 3.17 (2014) sets
//! `image_size`.

use core::fmt;

/// Size of the header.
pub const IMAGE_HEADER_SIZE: usize = 64;
/// The kernel's base must be 2 MiB aligned (`text_offset` is added to it).
pub const KERNEL_BASE_ALIGN: u64 = 2 << 20;

const MAGIC: [u8; 4] = *b"ARM\x64";
const MAGIC_OFFSET: usize = 0x38;
const TEXT_OFFSET_ALIGN: u64 = 4 << 10;

const FLAG_BIG_ENDIAN: u64 = 1 << 0;
const FLAG_PAGE_SIZE_SHIFT: u32 = 1;
const FLAG_PAGE_SIZE_MASK: u64 = 0b11 << FLAG_PAGE_SIZE_SHIFT;
const FLAG_PLACEMENT_ANYWHERE: u64 = 1 << 3;

/// The kernel's translation granule, from flags bits 1-2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 0: not given (kernels before 3.17 set no flags).
    Unspecified,
    /// 1: 4 KiB.
    Size4K,
}

/// Where the kernel's 2 MiB-aligned base may go (flags bit 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhysicalPlacement {
    /// 0: as close as possible to the base of DRAM (kernels before 4.6 cannot use
    /// memory below their own base).
    NearDramBase,
    /// 1: anywhere in physical memory.
    Anywhere,
}

/// A validated arm64 `Image` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the image from its 2 MiB-aligned base: 4 KiB aligned, below 2 MiB.
    pub text_offset: u64,
    /// Bytes the kernel uses from the start of the image (file plus BSS and early data);
    /// never zero and at least the file size.
    pub image_size: u64,
    /// The raw flags word (reserved bits included).
    pub flags: u64,
    pub page_size: PageSize,
    pub placement: PhysicalPlacement,
    /// Size of the file the header came from (the bytes to copy when moving the kernel).
    pub file_size: u64,
}

/// Why a kernel module is not a bootable arm64 `Image`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Fewer than 64 bytes: not even a header.
    TooShort { len: u64 },
    /// A compressed file (vmlinuz as some distributions ship it); it must be
    /// decompressed first.
    Compressed { format: CompressionFormat },
    /// An EFI zboot image (`CONFIG_EFI_ZBOOT`): a PE wrapper around a compressed Image
    /// that only an EFI loader can unpack.
    EfiZboot {
        /// The compression type the zboot header names, e.g. "gzip" or "zstd".
        compression: ShortName,
    },
    /// An ELF file, e.g. `vmlinux` instead of `arch/arm64/boot/Image`.
    Elf,
    /// A U-Boot legacy uImage wrapper.
    UImage,
    /// The magic at 0x38 is not `"ARM\x64"`.
    BadMagic { found: [u8; 4] },
    /// Flags bit 0: a big-endian kernel; the guest is little-endian.
    BigEndian,
    /// A 16K or 64K page kernel; only 4K-page kernels are supported.
    UnsupportedPageSize { page_size_kib: u32 },
    /// `image_size` is 0: a kernel older than 3.17 whose footprint is unknown.
    LegacyNoImageSize,
    /// `text_offset` is not a multiple of 4 KiB.
    TextOffsetMisaligned { text_offset: u64 },
    /// `text_offset` is 2 MiB or more, past the 2 MiB block the base starts.
    TextOffsetTooLarge { text_offset: u64 },
    /// `image_size` is smaller than the file: a corrupt header or a wrong file.
    ImageSizeBelowFileSize { image_size: u64, file_size: u64 },
}

/// Compressed formats recognised by their leading magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionFormat {
    Gzip,
    Zstd,
    Xz,
    Bzip2,
    Lz4,
}

impl CompressionFormat {
    fn detect(bytes: &[u8]) -> Option<Self> {
        const SIGNATURES: [(&[u8], CompressionFormat); 6] = [
            (&[0x1f, 0x8b], CompressionFormat::Gzip),
            (&[0x28, 0xb5, 0x2f, 0xfd], CompressionFormat::Zstd),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], CompressionFormat::Xz),
            (b"BZh", CompressionFormat::Bzip2),
            (&[0x04, 0x22, 0x4d, 0x18], CompressionFormat::Lz4),
            // The legacy LZ4 frame the kernel's own lz4 compressor writes.
            (&[0x02, 0x21, 0x4c, 0x18], CompressionFormat::Lz4),
        ];
        SIGNATURES
            .iter()
            .find(|(magic, _)| bytes.starts_with(magic))
            .map(|&(_, format)| format)
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::Xz => "xz",
            Self::Bzip2 => "bzip2",
            Self::Lz4 => "lz4",
        }
    }
}

/// Up to 16 printable ASCII bytes copied out of a header (no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ShortName {
    bytes: [u8; 16],
    len: u8,
}

impl ShortName {
    /// The NUL-terminated printable prefix of `raw` (at most 16 bytes).
    fn from_c_bytes(raw: &[u8]) -> Self {
        let mut bytes = [0u8; 16];
        let mut len = 0u8;
        for (slot, &byte) in bytes.iter_mut().zip(raw) {
            if !byte.is_ascii_graphic() {
                break;
            }
            *slot = byte;
            len += 1;
        }
        Self { bytes, len }
    }

    pub fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..usize::from(self.len)).unwrap_or(&[]);
        // Only ASCII graphic bytes are stored, so this never fails.
        core::str::from_utf8(bytes).unwrap_or("")
    }
}

impl fmt::Debug for ShortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => write!(
                f,
                "kernel module is {len} bytes, shorter than the 64-byte arm64 Image header"
            ),
            Self::Compressed { format } => write!(
                f,
                "kernel module is {}-compressed; decompress it to a raw arm64 Image first",
                format.name()
            ),
            Self::EfiZboot { compression } => write!(
                f,
                "kernel module is an EFI zboot image ({}-compressed Image inside a PE \
                 wrapper); pass the raw arch/arm64/boot/Image instead",
                compression.as_str()
            ),
            Self::Elf => f.write_str(
                "kernel module is an ELF file (vmlinux?); pass the raw arch/arm64/boot/Image",
            ),
            Self::UImage => {
                f.write_str("kernel module is a U-Boot uImage; pass the raw arm64 Image it wraps")
            }
            Self::BadMagic { found } => write!(
                f,
                "kernel module is not an arm64 Image: magic at 0x38 is {:02x} {:02x} {:02x} \
                 {:02x}, expected 41 52 4d 64 (\"ARM\\x64\")",
                found[0], found[1], found[2], found[3]
            ),
            Self::BigEndian => f.write_str(
                "kernel Image is big-endian (flags bit 0); only little-endian guests are supported",
            ),
            Self::UnsupportedPageSize { page_size_kib } => write!(
                f,
                "kernel Image is built for {page_size_kib}K pages (flags bits 1-2); only 4K-page \
                 kernels are supported"
            ),
            Self::LegacyNoImageSize => f.write_str(
                "kernel Image has image_size 0 (a pre-3.17 kernel): its memory footprint is \
                 unknown, so it cannot be placed safely",
            ),
            Self::TextOffsetMisaligned { text_offset } => write!(
                f,
                "kernel Image text_offset {text_offset:#x} is not 4 KiB aligned"
            ),
            Self::TextOffsetTooLarge { text_offset } => write!(
                f,
                "kernel Image text_offset {text_offset:#x} is not below 2 MiB"
            ),
            Self::ImageSizeBelowFileSize {
                image_size,
                file_size,
            } => write!(
                f,
                "kernel Image image_size {image_size:#x} is smaller than the file \
                 ({file_size:#x} bytes): corrupt header or wrong file"
            ),
        }
    }
}

impl ImageHeader {
    /// Parses and checks the header of a whole `Image` file (`bytes` is the kernel
    /// module; its length is the file size).
    ///
    /// # Errors
    ///
    /// Every [`ImageError`] variant; see [`ImageHeader::parse_with_file_size`].
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        Self::parse_with_file_size(bytes, bytes.len() as u64)
    }

    /// Parses and checks the header from the first bytes of an `Image` whose whole file
    /// is `file_size` bytes, so the hypervisor need not map the whole module to check it.
    ///
    /// # Errors
    ///
    /// - wrong kinds of file: [`ImageError::Compressed`], [`ImageError::EfiZboot`],
    ///   [`ImageError::Elf`], [`ImageError::UImage`], [`ImageError::BadMagic`];
    /// - [`ImageError::TooShort`] when fewer than 64 bytes are given or `file_size < 64`;
    /// - unsupported kernels: [`ImageError::BigEndian`],
    ///   [`ImageError::UnsupportedPageSize`], [`ImageError::LegacyNoImageSize`];
    /// - inconsistent headers: [`ImageError::TextOffsetMisaligned`],
    ///   [`ImageError::TextOffsetTooLarge`], [`ImageError::ImageSizeBelowFileSize`].
    pub fn parse_with_file_size(bytes: &[u8], file_size: u64) -> Result<Self, ImageError> {
        // Recognise the usual wrong files before anything else: their names help more
        // than "too short" or "bad magic".
        if let Some(format) = CompressionFormat::detect(bytes) {
            return Err(ImageError::Compressed { format });
        }
        if bytes.starts_with(b"MZ") && bytes.get(4..8) == Some(b"zimg") {
            // Compression type: a NUL-terminated string at 0x18 (zboot-header.S).
            let compression = ShortName::from_c_bytes(bytes.get(0x18..MAGIC_OFFSET).unwrap_or(&[]));
            return Err(ImageError::EfiZboot { compression });
        }
        if bytes.starts_with(b"\x7fELF") {
            return Err(ImageError::Elf);
        }
        if bytes.starts_with(&[0x27, 0x05, 0x19, 0x56]) {
            return Err(ImageError::UImage);
        }

        let header: &[u8; IMAGE_HEADER_SIZE] = match bytes.first_chunk() {
            Some(header) if file_size >= IMAGE_HEADER_SIZE as u64 => header,
            _ => {
                return Err(ImageError::TooShort {
                    len: file_size.min(bytes.len() as u64),
                });
            }
        };
        let found = word::<4>(header, MAGIC_OFFSET);
        if found != MAGIC {
            return Err(ImageError::BadMagic { found });
        }

        let text_offset = u64::from_le_bytes(word::<8>(header, 0x08));
        let image_size = u64::from_le_bytes(word::<8>(header, 0x10));
        let flags = u64::from_le_bytes(word::<8>(header, 0x18));

        if flags & FLAG_BIG_ENDIAN != 0 {
            return Err(ImageError::BigEndian);
        }
        let page_size = match (flags & FLAG_PAGE_SIZE_MASK) >> FLAG_PAGE_SIZE_SHIFT {
            0 => PageSize::Unspecified,
            1 => PageSize::Size4K,
            2 => return Err(ImageError::UnsupportedPageSize { page_size_kib: 16 }),
            _ => return Err(ImageError::UnsupportedPageSize { page_size_kib: 64 }),
        };
        let placement = if flags & FLAG_PLACEMENT_ANYWHERE != 0 {
            PhysicalPlacement::Anywhere
        } else {
            PhysicalPlacement::NearDramBase
        };
        if image_size == 0 {
            return Err(ImageError::LegacyNoImageSize);
        }
        if !text_offset.is_multiple_of(TEXT_OFFSET_ALIGN) {
            return Err(ImageError::TextOffsetMisaligned { text_offset });
        }
        if text_offset >= KERNEL_BASE_ALIGN {
            return Err(ImageError::TextOffsetTooLarge { text_offset });
        }
        if image_size < file_size {
            return Err(ImageError::ImageSizeBelowFileSize {
                image_size,
                file_size,
            });
        }

        Ok(Self {
            text_offset,
            image_size,
            flags,
            page_size,
            placement,
            file_size,
        })
    }
}

/// `N` bytes at `offset` of the header (offsets are constants well inside 64 bytes).
fn word<const N: usize>(header: &[u8; IMAGE_HEADER_SIZE], offset: usize) -> [u8; N] {
    header
        .get(offset..)
        .and_then(|rest| rest.first_chunk::<N>())
        .copied()
        .unwrap_or([0; N])
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    /// The first 64 bytes of the Debian 6.12 cloud arm64 kernel (see tests/fixtures).
    const DEBIAN_HEADER: &[u8] = include_bytes!("../tests/fixtures/debian-6.12-arm64-Image.head");
    const DEBIAN_FILE_SIZE: u64 = 34_834_368;

    /// A synthetic header: MZ-less code words, the given fields, the magic.
    fn header(text_offset: u64, image_size: u64, flags: u64) -> [u8; 64] {
        let mut bytes = [0u8; 64];
        bytes[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b +64
        bytes[8..16].copy_from_slice(&text_offset.to_le_bytes());
        bytes[16..24].copy_from_slice(&image_size.to_le_bytes());
        bytes[24..32].copy_from_slice(&flags.to_le_bytes());
        bytes[0x38..0x3c].copy_from_slice(b"ARM\x64");
        bytes
    }

    #[test]
    fn debian_kernel_header() {
        let parsed = ImageHeader::parse_with_file_size(DEBIAN_HEADER, DEBIAN_FILE_SIZE).unwrap();
        assert_eq!(
            parsed,
            ImageHeader {
                text_offset: 0,
                image_size: 0x223_0000,
                flags: 0xa,
                page_size: PageSize::Size4K,
                placement: PhysicalPlacement::Anywhere,
                file_size: DEBIAN_FILE_SIZE,
            }
        );
    }

    #[test]
    fn parse_uses_the_slice_length_as_file_size() {
        let mut image = header(0, 0x10_0000, 0b0010).to_vec();
        image.resize(0x8000, 0);
        let parsed = ImageHeader::parse(&image).unwrap();
        assert_eq!(parsed.file_size, 0x8000);
        assert_eq!(parsed.placement, PhysicalPlacement::NearDramBase);
    }

    #[test]
    fn unspecified_page_size_and_legacy_text_offset_accepted() {
        let parsed = ImageHeader::parse(&header(0x8_0000, 0x100_0000, 0)).unwrap();
        assert_eq!(parsed.page_size, PageSize::Unspecified);
        assert_eq!(parsed.text_offset, 0x8_0000);
    }

    #[test]
    fn reserved_flag_bits_are_ignored() {
        let parsed = ImageHeader::parse(&header(0, 0x10_0000, 0xff00_0000_0000_000a)).unwrap();
        assert_eq!(parsed.placement, PhysicalPlacement::Anywhere);
        assert_eq!(parsed.flags, 0xff00_0000_0000_000a);
    }

    #[test]
    fn too_short() {
        let err = ImageHeader::parse(&DEBIAN_HEADER[..63]).unwrap_err();
        assert_eq!(err, ImageError::TooShort { len: 63 });
        assert!(err.to_string().contains("63 bytes"));
        assert_eq!(
            ImageHeader::parse(&[]).unwrap_err(),
            ImageError::TooShort { len: 0 }
        );
        // A whole header but a file that claims to be shorter.
        assert_eq!(
            ImageHeader::parse_with_file_size(DEBIAN_HEADER, 10).unwrap_err(),
            ImageError::TooShort { len: 10 }
        );
    }

    #[test]
    fn gzip_is_named() {
        let mut bytes = [0u8; 64];
        bytes[..3].copy_from_slice(&[0x1f, 0x8b, 0x08]);
        let err = ImageHeader::parse(&bytes).unwrap_err();
        assert_eq!(
            err,
            ImageError::Compressed {
                format: CompressionFormat::Gzip
            }
        );
        assert!(err.to_string().contains("gzip-compressed"));
        // Even a two-byte file is recognised.
        assert!(matches!(
            ImageHeader::parse(&[0x1f, 0x8b]),
            Err(ImageError::Compressed { .. })
        ));
    }

    #[test]
    fn other_compressions_are_named() {
        for (magic, name) in [
            (&[0x28u8, 0xb5, 0x2f, 0xfd][..], "zstd"),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0][..], "xz"),
            (b"BZh9", "bzip2"),
            (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
            (&[0x02, 0x21, 0x4c, 0x18], "lz4"),
        ] {
            let err = ImageHeader::parse(magic).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn efi_zboot_is_named_with_its_compression() {
        let mut bytes = [0u8; 64];
        bytes[..4].copy_from_slice(b"MZ\0\0");
        bytes[4..8].copy_from_slice(b"zimg");
        bytes[0x18..0x1d].copy_from_slice(b"zstd\0");
        bytes[0x38..0x3c].copy_from_slice(&0x8182_23cdu32.to_le_bytes());
        let err = ImageHeader::parse(&bytes).unwrap_err();
        let ImageError::EfiZboot { compression } = err else {
            panic!("{err:?}")
        };
        assert_eq!(compression.as_str(), "zstd");
        assert!(err.to_string().contains("EFI zboot image (zstd-compressed"));
    }

    #[test]
    fn plain_efi_stub_image_is_not_zboot() {
        // The Debian Image starts with "MZ" too (its EFI stub) and must be accepted.
        assert!(DEBIAN_HEADER.starts_with(b"MZ"));
        assert!(ImageHeader::parse_with_file_size(DEBIAN_HEADER, DEBIAN_FILE_SIZE).is_ok());
    }

    #[test]
    fn elf_is_named() {
        let err = ImageHeader::parse(b"\x7fELF\x02\x01\x01\0").unwrap_err();
        assert_eq!(err, ImageError::Elf);
        assert!(err.to_string().contains("vmlinux"));
    }

    #[test]
    fn uimage_is_named() {
        let err = ImageHeader::parse(&[0x27, 0x05, 0x19, 0x56, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(err, ImageError::UImage);
        assert!(err.to_string().contains("uImage"));
    }

    #[test]
    fn bad_magic_shows_the_bytes() {
        let mut bytes = header(0, 0x10_0000, 0);
        bytes[0x38..0x3c].copy_from_slice(b"RSC\x05"); // a RISC-V Image
        let err = ImageHeader::parse(&bytes).unwrap_err();
        assert_eq!(err, ImageError::BadMagic { found: *b"RSC\x05" });
        assert!(err.to_string().contains("52 53 43 05"), "{err}");
    }

    #[test]
    fn big_endian_rejected() {
        let err = ImageHeader::parse(&header(0, 0x10_0000, 0b1011)).unwrap_err();
        assert_eq!(err, ImageError::BigEndian);
        assert!(err.to_string().contains("big-endian"));
    }

    #[test]
    fn page_sizes_16k_and_64k_rejected() {
        let err = ImageHeader::parse(&header(0, 0x10_0000, 2 << 1)).unwrap_err();
        assert_eq!(err, ImageError::UnsupportedPageSize { page_size_kib: 16 });
        assert!(err.to_string().contains("16K pages"));
        let err = ImageHeader::parse(&header(0, 0x10_0000, 3 << 1)).unwrap_err();
        assert_eq!(err, ImageError::UnsupportedPageSize { page_size_kib: 64 });
    }

    #[test]
    fn legacy_image_without_size_rejected() {
        let err = ImageHeader::parse(&header(0x8_0000, 0, 0)).unwrap_err();
        assert_eq!(err, ImageError::LegacyNoImageSize);
        assert!(err.to_string().contains("pre-3.17"));
    }

    #[test]
    fn text_offset_rules() {
        let err = ImageHeader::parse(&header(0x8_0800, 0x10_0000, 2)).unwrap_err();
        assert_eq!(
            err,
            ImageError::TextOffsetMisaligned {
                text_offset: 0x8_0800
            }
        );
        assert!(err.to_string().contains("0x80800"));
        let err = ImageHeader::parse(&header(0x20_0000, 0x10_0000, 2)).unwrap_err();
        assert_eq!(
            err,
            ImageError::TextOffsetTooLarge {
                text_offset: 0x20_0000
            }
        );
        assert!(err.to_string().contains("0x200000"));
        assert!(ImageHeader::parse(&header(0x1f_f000, 0x10_0000, 2)).is_ok());
    }

    #[test]
    fn image_size_below_file_size_rejected() {
        let err = ImageHeader::parse_with_file_size(&header(0, 0x1000, 2), 0x2000).unwrap_err();
        assert_eq!(
            err,
            ImageError::ImageSizeBelowFileSize {
                image_size: 0x1000,
                file_size: 0x2000
            }
        );
        assert!(err.to_string().contains("0x1000") && err.to_string().contains("0x2000"));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ImageHeader::parse(&bytes);
        }

        #[test]
        fn mutated_headers_never_panic_and_stay_consistent(
            mutations in proptest::collection::vec((0usize..64, any::<u8>()), 1..8),
            file_size in any::<u64>(),
        ) {
            let mut bytes: Vec<u8> = DEBIAN_HEADER.to_vec();
            for (offset, value) in mutations {
                bytes[offset] = value;
            }
            match ImageHeader::parse_with_file_size(&bytes, file_size) {
                Ok(parsed) => {
                    prop_assert!(parsed.text_offset < KERNEL_BASE_ALIGN);
                    prop_assert!(parsed.text_offset.is_multiple_of(TEXT_OFFSET_ALIGN));
                    prop_assert!(parsed.image_size >= parsed.file_size);
                    prop_assert!(parsed.image_size > 0);
                }
                Err(err) => prop_assert!(!err.to_string().is_empty()),
            }
        }
    }
}
