//! The hypervisor's command line (`platform::bootargs::parse`), `crashkernel=` above all,
//! and where the crash region then goes (`hypervisor::mm::memory_plan`).
//!
//! Input: the command line, optionally followed by a NUL byte and bytes that describe a
//! RAM layout (banks, image, DTB, modules, firmware reservations); without them the
//! layout is QEMU virt's. Checked:
//! - parsing is total: diagnostics fit their list, each prints;
//! - printing the parsed options and parsing that text gives the same options and no
//!   diagnostics (round trip), and putting that text before the command line changes
//!   nothing (later options override earlier ones; bad values keep the earlier value);
//! - `crashkernel=V` agrees with a reference Linux `memparse` reading of V;
//! - `place_crash_region` and `plan_layout` agree with a reference written here on the
//!   exact result, and the layout never gives the guest hypervisor memory.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use hypervisor::mm::memory_plan::{
    self, CrashPlacementError, CrashRequest, Exclusion, ExclusionKind, Layout, LayoutError,
    MAX_EXCLUSIONS,
};
use libfuzzer_sys::fuzz_target;
use platform::bootargs::{self, Diagnostic, MAX_DIAGNOSTICS};
use platform::info::PhysRange;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const CRASH_ALIGN: u64 = 2 * MIB;
const PAGE: u64 = 4096;

// ---- command line ----------------------------------------------------------------

/// `simple_strtoull(s, &end, 0)` then `memparse`'s suffix: `None` on overflow or when no
/// digit is there. Returns the value and the rest.
fn memparse(text: &str) -> Option<(u64, &str)> {
    let bytes = text.as_bytes();
    let (radix, start) = match bytes {
        [b'0', b'x' | b'X', next, ..] if next.is_ascii_hexdigit() => (16, 2),
        [b'0', ..] => (8, 0),
        _ => (10, 0),
    };
    let digits = bytes[start..]
        .iter()
        .take_while(|&&b| (b as char).is_digit(radix))
        .count();
    if digits == 0 {
        return None;
    }
    let mut value: u128 = 0;
    for &b in &bytes[start..start + digits] {
        value = value * u128::from(radix) + u128::from((b as char).to_digit(radix)?);
        if value > u128::from(u64::MAX) {
            return None;
        }
    }
    let rest = &text[start + digits..];
    let shift = match rest.as_bytes().first().map(u8::to_ascii_uppercase) {
        Some(b'K') => 10,
        Some(b'M') => 20,
        Some(b'G') => 30,
        Some(b'T') => 40,
        Some(b'P') => 50,
        Some(b'E') => 60,
        _ => return Some((value as u64, rest)),
    };
    let scaled = value << shift;
    (scaled <= u128::from(u64::MAX)).then(|| (scaled as u64, &rest[1..]))
}

/// Linux `parse_crashkernel_simple`: `SIZE[@BASE]` and nothing else.
fn reference_crashkernel(value: &str) -> Option<(u64, Option<u64>)> {
    if value.contains(':') {
        return None;
    }
    let (size, rest) = memparse(value)?;
    if rest.is_empty() {
        return Some((size, None));
    }
    let (base, rest) = memparse(rest.strip_prefix('@')?)?;
    rest.is_empty().then_some((size, Some(base)))
}

fn check_diagnostics(parsed: &bootargs::ParsedArgs<'_>) {
    let list = parsed.diagnostics.as_slice();
    assert!(list.len() <= MAX_DIAGNOSTICS);
    for (i, diagnostic) in list.iter().enumerate() {
        assert!(!diagnostic.to_string().is_empty());
        if let Diagnostic::Omitted { count, errors } = diagnostic {
            assert_eq!(i, MAX_DIAGNOSTICS - 1, "Omitted before the last slot");
            assert!(*count >= 1 && errors <= count);
        }
    }
    assert_eq!(
        parsed.diagnostics.has_errors(),
        list.iter()
            .any(|d| d.severity() == bootargs::Severity::Error)
    );
}

fn check_cmdline(cmdline: &str) -> Option<CrashRequest> {
    let parsed = bootargs::parse(cmdline);
    check_diagnostics(&parsed);
    let args = parsed.args;

    // Round trip through the printed form.
    let printed = args.to_string();
    let again = bootargs::parse(&printed);
    assert_eq!(again.args, args, "{printed:?} from {cmdline:?}");
    assert!(
        again.diagnostics.is_empty(),
        "{printed:?}: {:?}",
        again.diagnostics
    );

    // The printed form as a prefix changes nothing.
    let prefixed = format!("{printed} {cmdline}");
    assert_eq!(bootargs::parse(&prefixed).args, args, "{prefixed:?}");

    // A crashkernel value (the first word of the input, unquoted) against the reference.
    let word: String = cmdline
        .chars()
        .take_while(|c| !c.is_ascii_whitespace() && *c != '"' && *c != '\u{b}')
        .collect();
    let line = format!("crashkernel={word}");
    let single = bootargs::parse(&line);
    let got = single.args.crashkernel.map(|c| (c.size, c.base));
    assert_eq!(got, reference_crashkernel(&word), "crashkernel={word:?}");
    assert_eq!(got.is_none(), single.diagnostics.has_errors());

    args.crashkernel.map(|c| CrashRequest {
        size: c.size,
        base: c.base,
    })
}

// ---- memory layout -------------------------------------------------------------------

#[derive(Debug)]
struct Machine {
    ram: Vec<PhysRange>,
    exclusions: Vec<Exclusion>,
    request: Option<CrashRequest>,
}

fn qemu_virt() -> Machine {
    let range = |base, size| PhysRange::new(base, size).unwrap();
    Machine {
        ram: vec![range(0x4000_0000, 2 * GIB)],
        exclusions: vec![
            Exclusion {
                range: range(0x4020_0000, 2 * MIB),
                kind: ExclusionKind::Image,
            },
            Exclusion {
                range: range(0x4800_0000, MIB),
                kind: ExclusionKind::DeviceTree,
            },
            Exclusion {
                range: range(0x5000_0000, 34 * MIB),
                kind: ExclusionKind::Module,
            },
        ],
        request: None,
    }
}

/// A size or gap: mostly whole pages, 2 MiB blocks or GiBs, sometimes anything.
fn amount(u: &mut Unstructured<'_>) -> arbitrary::Result<u64> {
    let count = u64::from(u.int_in_range(0u16..=2048)?);
    Ok(match u.int_in_range(0u8..=5)? {
        0 => count * PAGE,
        1 | 2 => count * 2 * MIB,
        3 => (count % 16) * GIB,
        4 => count * 64 * MIB,
        _ => u64::arbitrary(u)? >> u.int_in_range(0u32..=63)?,
    })
}

/// Banks sorted and disjoint, as the DT parser guarantees.
fn machine(u: &mut Unstructured<'_>) -> arbitrary::Result<Machine> {
    let mut ram = Vec::new();
    let mut cursor = amount(u)?;
    for _ in 0..u.int_in_range(1u8..=8)? {
        let base = cursor;
        let size = amount(u)?.max(1).min(u64::MAX - base);
        let Some(bank) = PhysRange::new(base, size) else {
            break;
        };
        ram.push(bank);
        cursor = bank.end().saturating_add(amount(u)?);
        if cursor == u64::MAX {
            break;
        }
    }
    if ram.is_empty() {
        ram.push(PhysRange::new(0x4000_0000, GIB).unwrap());
    }
    let kinds = [
        ExclusionKind::Image,
        ExclusionKind::DeviceTree,
        ExclusionKind::Module,
        ExclusionKind::Reserved,
    ];
    let mut exclusions = Vec::new();
    for _ in 0..u.int_in_range(0..=MAX_EXCLUSIONS + 2)? {
        // Mostly near or inside a bank.
        let bank = ram[usize::from(u.int_in_range(0u8..=7)?) % ram.len()];
        let base = if u.ratio(7u8, 8u8)? {
            bank.base.saturating_add(amount(u)?)
        } else {
            u64::arbitrary(u)?
        };
        let size = amount(u)?.max(1).min(u64::MAX - base);
        if let Some(range) = PhysRange::new(base, size) {
            exclusions.push(Exclusion {
                range,
                kind: *u.choose(&kinds)?,
            });
        }
    }
    let request = if u.arbitrary()? {
        Some(CrashRequest {
            size: amount(u)?,
            base: if u.arbitrary()? {
                Some(if u.arbitrary()? {
                    ram[0]
                        .base
                        .checked_next_multiple_of(CRASH_ALIGN)
                        .unwrap_or(0)
                        .wrapping_add(amount(u)?)
                } else {
                    u64::arbitrary(u)?
                })
            } else {
                None
            },
        })
    } else {
        None
    };
    Ok(Machine {
        ram,
        exclusions,
        request,
    })
}

/// RAM minus `taken`, each free piece shrunk to whole pages, sorted by base.
fn reference_free(ram: &[PhysRange], taken: &[PhysRange]) -> Vec<(u64, u64)> {
    let mut pieces: Vec<(u64, u64)> = ram.iter().map(|r| (r.base, r.end())).collect();
    for t in taken {
        let mut next = Vec::new();
        for (s, e) in pieces {
            if t.end() <= s || t.base >= e {
                next.push((s, e));
                continue;
            }
            if s < t.base {
                next.push((s, t.base));
            }
            if t.end() < e {
                next.push((t.end(), e));
            }
        }
        pieces = next;
    }
    let mut free: Vec<(u64, u64)> = pieces
        .into_iter()
        .filter_map(|(s, e)| {
            let s = s.checked_next_multiple_of(PAGE)?;
            let e = e / PAGE * PAGE;
            (e > s).then_some((s, e))
        })
        .collect();
    free.sort_unstable();
    free
}

/// The highest 2 MiB-aligned place for `size` bytes in one free piece, ending at or
/// below `limit`.
fn reference_fit(free: &[(u64, u64)], size: u64, limit: u64) -> Option<PhysRange> {
    free.iter()
        .filter_map(|&(s, e)| {
            let top = e.min(limit);
            let base = top.checked_sub(size)? / CRASH_ALIGN * CRASH_ALIGN;
            (base >= s).then_some(PhysRange { base, size })
        })
        .max()
}

fn reference_place(
    request: CrashRequest,
    ram: &[PhysRange],
    exclusions: &[Exclusion],
) -> Result<PhysRange, CrashPlacementError> {
    if request.size == 0 {
        return Err(CrashPlacementError::ZeroSize);
    }
    if exclusions.len() > MAX_EXCLUSIONS {
        return Err(CrashPlacementError::TooManyExclusions {
            count: exclusions.len(),
            limit: MAX_EXCLUSIONS,
        });
    }
    let total: u128 = ram.iter().map(|r| u128::from(r.size)).sum();
    if u128::from(request.size) > total {
        return Err(CrashPlacementError::LargerThanRam {
            size: request.size,
            ram: total as u64,
        });
    }
    let Some(size) = request.size.checked_next_multiple_of(PAGE) else {
        return Err(CrashPlacementError::Overflow {
            base: request.base.unwrap_or(0),
            size: request.size,
        });
    };
    match request.base {
        Some(base) => {
            if base % CRASH_ALIGN != 0 {
                return Err(CrashPlacementError::BaseUnaligned { base });
            }
            let range =
                PhysRange::new(base, size).ok_or(CrashPlacementError::Overflow { base, size })?;
            if !ram
                .iter()
                .any(|r| r.base <= range.base && range.end() <= r.end())
            {
                return Err(CrashPlacementError::OutsideRam { range });
            }
            if let Some(with) = exclusions
                .iter()
                .find(|e| e.range.base < range.end() && range.base < e.range.end())
            {
                return Err(CrashPlacementError::Overlaps { range, with: *with });
            }
            Ok(range)
        }
        None => {
            let taken: Vec<PhysRange> = exclusions.iter().map(|e| e.range).collect();
            let free = reference_free(ram, &taken);
            reference_fit(&free, size, 1 << 32)
                .or_else(|| reference_fit(&free, size, u64::MAX))
                .ok_or(CrashPlacementError::NoRoom { size })
        }
    }
}

fn reference_layout(m: &Machine) -> Result<Layout, LayoutError> {
    if m.exclusions.len() > MAX_EXCLUSIONS - 2 {
        return Err(LayoutError::TooManyExclusions {
            count: m.exclusions.len(),
            limit: MAX_EXCLUSIONS - 2,
        });
    }
    let taken = &m.exclusions[..];
    let placed = m.request.map(|r| reference_place(r, &m.ram, taken));
    let crash = placed.and_then(Result::ok);
    let crash_error = placed.and_then(Result::err);
    let total: u64 = m.ram.iter().map(|r| r.size).sum();
    // The pool's size rule is memory_plan's own (its proptest checks it against an exact
    // table count); this reference checks where the pool and the rest go.
    let ranges = (m.ram.len() + taken.len() + usize::from(crash.is_some()) + 1) as u64;
    let pool_size = memory_plan::pool_size(total, ranges, memory_plan::PoolNeeds::default());
    let mut blocked: Vec<PhysRange> = taken.iter().map(|e| e.range).collect();
    blocked.extend(crash);
    let pool = reference_fit(&reference_free(&m.ram, &blocked), pool_size, u64::MAX)
        .ok_or(LayoutError::NoRoomForPool { size: pool_size })?;
    let mut owned: Vec<PhysRange> = m
        .exclusions
        .iter()
        .filter(|e| matches!(e.kind, ExclusionKind::Image | ExclusionKind::DeviceTree))
        .map(|e| e.range)
        .collect();
    owned.push(pool);
    owned.extend(crash);
    let guest_ram = reference_free(&m.ram, &owned)
        .into_iter()
        .map(|(s, e)| PhysRange {
            base: s,
            size: e - s,
        })
        .collect();
    Ok(Layout {
        pool,
        crash,
        crash_error,
        guest_ram,
    })
}

fn check_layout(m: &Machine) {
    if let Some(request) = m.request {
        let placed = memory_plan::place_crash_region(request, &m.ram, &m.exclusions);
        assert_eq!(
            placed,
            reference_place(request, &m.ram, &m.exclusions),
            "{request:x?} in {m:x?}"
        );
        if let Ok(region) = placed {
            assert_eq!(region.base % CRASH_ALIGN, 0);
            assert!(region.size >= request.size && region.size % PAGE == 0);
            assert!(m.ram.iter().any(|bank| bank.contains_range(&region)));
            assert!(m.exclusions.iter().all(|e| !e.range.overlaps(&region)));
        } else if let Err(error) = placed {
            assert!(error.to_string().starts_with("crashkernel: "));
        }
    }
    let layout = memory_plan::plan_layout(
        &m.ram,
        &m.exclusions,
        m.request,
        memory_plan::PoolNeeds::default(),
    );
    assert_eq!(layout, reference_layout(m), "layout of {m:x?}");
    let Ok(layout) = layout else {
        return;
    };
    // The guest never gets hypervisor memory, and everything is RAM.
    let mut owned = vec![layout.pool];
    owned.extend(layout.crash);
    owned.extend(
        m.exclusions
            .iter()
            .filter(|e| matches!(e.kind, ExclusionKind::Image | ExclusionKind::DeviceTree))
            .map(|e| e.range),
    );
    for range in layout
        .guest_ram
        .iter()
        .chain(&owned[..1 + layout.crash.iter().count()])
    {
        assert!(
            m.ram.iter().any(|bank| bank.contains_range(range)),
            "{range:x?}"
        );
    }
    for window in layout.guest_ram.windows(2) {
        assert!(window[0].end() <= window[1].base);
    }
    for guest in &layout.guest_ram {
        assert_eq!((guest.base % PAGE, guest.size % PAGE), (0, 0));
        for hyp in &owned {
            assert!(!guest.overlaps(hyp), "guest {guest:x?} overlaps {hyp:x?}");
        }
    }
    if let Some(crash) = layout.crash {
        assert!(!crash.overlaps(&layout.pool));
        assert!(m.exclusions.iter().all(|e| !e.range.overlaps(&crash)));
    }
    assert_eq!(layout.pool.base % CRASH_ALIGN, 0);
}

fuzz_target!(|data: &[u8]| {
    let (line, layout_bytes) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
        None => (data, None),
    };
    let cmdline = String::from_utf8_lossy(line);
    let request = check_cmdline(&cmdline);

    let mut m = match layout_bytes {
        Some(bytes) => match machine(&mut Unstructured::new(bytes)) {
            Ok(m) => m,
            Err(_) => return,
        },
        None => qemu_virt(),
    };
    // The command line's request wins, as at boot.
    if request.is_some() {
        m.request = request;
    }
    check_layout(&m);
});
