//! `platform::dt` never panics on mutated real DTBs: bit flips, byte overwrites,
//! truncations, random header fields, garbage in the strings block, random tokens in the
//! structure block. (The `fdt` crate alone panics on about 40% of such mutants; the
//! validating walk in `dt::structure` is what keeps `parse` from reaching those panics.)
//! A blob that does parse must still give a consistent `PlatformInfo`.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::GOOD_FIXTURES;
use platform::dt;
use platform::info::PlatformInfo;
use proptest::prelude::*;

const DTB_BASE: u64 = 0x4800_0000;

/// Runs every entry point on `blob`; fails the test with the blob's description if any
/// of them panics, and checks the invariants of a successful parse.
fn exercise(blob: &[u8], what: &str) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let _ = dt::blob_size(blob);
        let _ = dt::find_console(blob);
        match dt::parse(blob, DTB_BASE) {
            Ok(info) => check_invariants(&info),
            // Display must not panic either.
            Err(error) => drop(error.to_string()),
        }
    }));
    assert!(outcome.is_ok(), "dt panicked on {what}");
}

fn check_invariants(info: &PlatformInfo<'_>) {
    assert!(!info.memory.is_empty());
    assert!(info.memory.windows(2).all(|w| w[0].end() <= w[1].base));
    assert!(
        info.reserved
            .windows(2)
            .all(|w| w[0].range.end() <= w[1].range.base)
    );
    assert!(!info.cpus.is_empty());
    assert!(!info.gic.redistributors.is_empty());
}

fn header_field(blob: &[u8], index: usize) -> u32 {
    u32::from_be_bytes(blob[index * 4..index * 4 + 4].try_into().unwrap())
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBits(Vec<(usize, u8)>),
    SetBytes(Vec<(usize, u8)>),
    Truncate(usize),
    /// Header field index (1..10) set to a value.
    HeaderField(usize, u32),
    /// Header field nudged by a small delta (offsets just out of range).
    HeaderNudge(usize, i32),
    /// Bytes of the strings block (offset within it) overwritten.
    StringsGarbage(usize, Vec<u8>),
    /// An aligned struct-block word (index within it) set to a token-like value.
    StructWord(usize, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        prop::collection::vec((any::<usize>(), 0u8..8), 1..8).prop_map(Mutation::FlipBits),
        prop::collection::vec((any::<usize>(), any::<u8>()), 1..8).prop_map(Mutation::SetBytes),
        any::<usize>().prop_map(Mutation::Truncate),
        (1usize..10, any::<u32>()).prop_map(|(i, v)| Mutation::HeaderField(i, v)),
        (1usize..10, -64i32..64).prop_map(|(i, d)| Mutation::HeaderNudge(i, d)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(at, bytes)| Mutation::StringsGarbage(at, bytes)),
        (
            any::<usize>(),
            prop_oneof![0u32..12, any::<u32>(), Just(0xffff_ffff), Just(0x8000_0000)]
        )
            .prop_map(|(at, word)| Mutation::StructWord(at, word)),
    ]
}

/// Applies `mutation` to a copy of `blob`; positions are taken modulo the blob (or
/// block) size, and whatever would fall outside a blob already cut short is skipped.
fn apply(blob: &[u8], mutation: &Mutation) -> Vec<u8> {
    let mut out = blob.to_vec();
    let len = out.len();
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(target) = out.get_mut(at..at + bytes.len()) {
            target.copy_from_slice(bytes);
        }
    };
    match mutation {
        Mutation::FlipBits(flips) => {
            for &(at, bit) in flips {
                put(at % len, &[blob[at % len] ^ (1 << bit)]);
            }
        }
        Mutation::SetBytes(sets) => {
            for &(at, value) in sets {
                put(at % len, &[value]);
            }
        }
        Mutation::Truncate(at) => out.truncate(at % len),
        Mutation::HeaderField(index, value) => put(index * 4, &value.to_be_bytes()),
        Mutation::HeaderNudge(index, delta) => {
            let value = header_field(blob, *index).wrapping_add_signed(*delta);
            put(index * 4, &value.to_be_bytes());
        }
        Mutation::StringsGarbage(at, bytes) => {
            let (start, size) = (
                header_field(blob, 3) as usize,
                header_field(blob, 8) as usize,
            );
            if size > 0 {
                let at = start + at % size;
                let room = (start + size).saturating_sub(at).min(bytes.len());
                put(at, &bytes[..room]);
            }
        }
        Mutation::StructWord(at, word) => {
            let (start, size) = (
                header_field(blob, 2) as usize,
                header_field(blob, 9) as usize,
            );
            if size >= 4 {
                put(start + (at % (size / 4)) * 4, &word.to_be_bytes());
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_fixtures_never_panic(
        fixture in 0..GOOD_FIXTURES.len(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let (name, original) = GOOD_FIXTURES[fixture];
        let mut blob = original.to_vec();
        for mutation in &mutations {
            if blob.len() < dt::HEADER_SIZE {
                break;
            }
            blob = apply(&blob, mutation);
        }
        exercise(&blob, &format!("{name} after {mutations:?}"));
    }

    #[test]
    fn random_bytes_with_a_valid_magic_never_panic(
        mut bytes in prop::collection::vec(any::<u8>(), 40..512),
        total in 40u32..512,
    ) {
        bytes[..4].copy_from_slice(&0xd00d_feedu32.to_be_bytes());
        bytes[4..8].copy_from_slice(&total.to_be_bytes());
        exercise(&bytes, "random bytes");
    }
}

/// A deterministic sweep: every aligned struct-block word of one fixture replaced, one at
/// a time, by zero, END_NODE, PROP and a large number (as a token, a property length or a
/// name offset, these reach every bounds check of the validating walk).
#[test]
fn every_struct_word_replaced_never_panics() {
    let (name, original) = GOOD_FIXTURES[4];
    let (start, size) = (
        header_field(original, 2) as usize,
        header_field(original, 9) as usize,
    );
    for index in 0..size / 4 {
        for word in [0, 2, 3, 0x7fff_ffff] {
            let blob = apply(original, &Mutation::StructWord(index, word));
            exercise(
                &blob,
                &format!(
                    "{name} with struct word {index} at {:#x} = {word:#x}",
                    start + index * 4
                ),
            );
        }
    }
}

/// Every truncation of one fixture, with totalsize fixed up to match (so that the
/// structure walk, not the size check, meets the cut).
#[test]
fn every_truncation_with_matching_totalsize_never_panics() {
    let (name, original) = GOOD_FIXTURES[0];
    for len in 40..original.len() {
        let mut blob = original[..len].to_vec();
        blob[4..8].copy_from_slice(&(len as u32).to_be_bytes());
        exercise(&blob, &format!("{name} cut to {len}"));
    }
}

#[test]
fn unmutated_fixtures_parse() {
    for (name, blob) in GOOD_FIXTURES {
        let result = dt::parse(blob, DTB_BASE);
        assert!(result.is_ok(), "{name}: {:?}", result.err());
    }
}
