//! The arm64 `Image` header check (`guest_loader::image`), against a reference reading
//! of Documentation/arch/arm64/booting.rst written here independently.
//!
//! Input: the first bytes of a kernel module (the header, or whatever file it is).
//! `ImageHeader::parse` (file size = input length) and `parse_with_file_size` with
//! several file sizes must agree with the reference on the exact result, Ok or which
//! error, and an accepted header must satisfy what the placement code relies on.

#![no_main]

use guest_loader::image::{
    CompressionFormat, IMAGE_HEADER_SIZE, ImageError, ImageHeader, KERNEL_BASE_ALIGN, PageSize,
    PhysicalPlacement,
};
use libfuzzer_sys::fuzz_target;

fn le64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

/// What booting.rst says, in the order the loader must check it (wrong kinds of file
/// first, so that their names are reported).
fn reference(bytes: &[u8], file_size: u64) -> Result<ImageHeader, ImageError> {
    let starts = |magic: &[u8]| bytes.len() >= magic.len() && &bytes[..magic.len()] == magic;
    for (magic, format) in [
        (&[0x1f, 0x8b][..], CompressionFormat::Gzip),
        (&[0x28, 0xb5, 0x2f, 0xfd][..], CompressionFormat::Zstd),
        (
            &[0xfd, b'7', b'z', b'X', b'Z', 0x00][..],
            CompressionFormat::Xz,
        ),
        (&b"BZh"[..], CompressionFormat::Bzip2),
        (&[0x04, 0x22, 0x4d, 0x18][..], CompressionFormat::Lz4),
        (&[0x02, 0x21, 0x4c, 0x18][..], CompressionFormat::Lz4),
    ] {
        if starts(magic) {
            return Err(ImageError::Compressed { format });
        }
    }
    if starts(b"MZ") && bytes.len() >= 8 && &bytes[4..8] == b"zimg" {
        // The compression name is checked separately (its text is the header's).
        return match ImageHeader::parse_with_file_size(bytes, file_size) {
            Err(e @ ImageError::EfiZboot { .. }) => Err(e),
            other => panic!("zboot image not named as such: {other:?}"),
        };
    }
    if starts(b"\x7fELF") {
        return Err(ImageError::Elf);
    }
    if starts(&[0x27, 0x05, 0x19, 0x56]) {
        return Err(ImageError::UImage);
    }
    if bytes.len() < IMAGE_HEADER_SIZE || file_size < IMAGE_HEADER_SIZE as u64 {
        return Err(ImageError::TooShort {
            len: file_size.min(bytes.len() as u64),
        });
    }
    let found: [u8; 4] = bytes[0x38..0x3c].try_into().unwrap();
    if &found != b"ARM\x64" {
        return Err(ImageError::BadMagic { found });
    }
    let text_offset = le64(bytes, 0x08);
    let image_size = le64(bytes, 0x10);
    let flags = le64(bytes, 0x18);
    if flags & 1 != 0 {
        return Err(ImageError::BigEndian);
    }
    let page_size = match (flags >> 1) & 3 {
        0 => PageSize::Unspecified,
        1 => PageSize::Size4K,
        2 => return Err(ImageError::UnsupportedPageSize { page_size_kib: 16 }),
        _ => return Err(ImageError::UnsupportedPageSize { page_size_kib: 64 }),
    };
    let placement = if flags & 8 != 0 {
        PhysicalPlacement::Anywhere
    } else {
        PhysicalPlacement::NearDramBase
    };
    if image_size == 0 {
        return Err(ImageError::LegacyNoImageSize);
    }
    if !text_offset.is_multiple_of(4096) {
        return Err(ImageError::TextOffsetMisaligned { text_offset });
    }
    if text_offset >= 2 << 20 {
        return Err(ImageError::TextOffsetTooLarge { text_offset });
    }
    if image_size < file_size {
        return Err(ImageError::ImageSizeBelowFileSize {
            image_size,
            file_size,
        });
    }
    Ok(ImageHeader {
        text_offset,
        image_size,
        flags,
        page_size,
        placement,
        file_size,
    })
}

fn check(bytes: &[u8], file_size: u64) -> Result<ImageHeader, ImageError> {
    let result = ImageHeader::parse_with_file_size(bytes, file_size);
    assert_eq!(
        result,
        reference(bytes, file_size),
        "file size {file_size:#x}, header {:02x?}",
        &bytes[..bytes.len().min(64)]
    );
    match &result {
        Ok(header) => {
            // What placement relies on.
            assert!(header.text_offset < KERNEL_BASE_ALIGN);
            assert_eq!(header.text_offset % 4096, 0);
            assert!(header.image_size >= header.file_size);
            assert!(header.file_size >= IMAGE_HEADER_SIZE as u64);
            assert_eq!(header.file_size, file_size);
        }
        Err(error) => {
            let text = error.to_string();
            assert!(text.starts_with("kernel "), "{text}");
            if let ImageError::EfiZboot { compression } = error {
                let name = compression.as_str();
                assert!(name.len() <= 16 && name.bytes().all(|b| b.is_ascii_graphic()));
                // The NUL-terminated name at 0x18, inside the header only.
                match bytes.get(0x18..0x38) {
                    Some(field) => assert!(field.starts_with(name.as_bytes())),
                    None => assert!(name.is_empty()),
                }
            }
        }
    }
    result
}

fuzz_target!(|bytes: &[u8]| {
    let whole = ImageHeader::parse(bytes);
    assert_eq!(whole, check(bytes, bytes.len() as u64));

    // The hypervisor reads only the head of the module; the file size is the module's.
    let declared = if bytes.len() >= 0x18 {
        le64(bytes, 0x10)
    } else {
        0
    };
    for file_size in [
        0,
        63,
        64,
        declared,
        declared.wrapping_add(1),
        34_834_368,
        u64::MAX,
    ] {
        let result = check(bytes, file_size);
        // A header accepted for some file size is accepted for every size from 64 up to
        // its image_size, with the same fields.
        if let Ok(header) = result {
            for smaller in [64, header.image_size / 2, header.image_size] {
                if smaller >= 64 {
                    let again = check(bytes, smaller).expect("accepted for a smaller file");
                    assert_eq!(
                        (again.text_offset, again.image_size, again.flags),
                        (header.text_offset, header.image_size, header.flags)
                    );
                }
            }
        }
    }
});
