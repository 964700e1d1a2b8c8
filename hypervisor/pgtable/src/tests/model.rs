//! Random operation sequences against a simple model, with the invariant and trace
//! checkers after every step, in both regimes and with both split strategies.

use std::vec::Vec;

use proptest::prelude::*;

use super::support::*;
use crate::{Access, Attributes, Error, MapFlags, MemoryType, PhysAddr, Regime, SplitStrategy};

/// The model: sorted, disjoint intervals (start, end, pa of start, attributes, flags).
#[derive(Clone, Debug, Default)]
struct Model(Vec<(u64, u64, u64, Attributes, MapFlags)>);

impl Model {
    fn overlapping(
        &self,
        s: u64,
        e: u64,
    ) -> impl Iterator<Item = &(u64, u64, u64, Attributes, MapFlags)> {
        self.0.iter().filter(move |i| i.0 < e && s < i.1)
    }

    fn map(&mut self, s: u64, e: u64, pa: u64, a: Attributes, f: MapFlags) -> Result<(), Error> {
        for &(is, _, ipa, ia, iflags) in self.overlapping(s, e) {
            if ipa.wrapping_sub(is) != pa.wrapping_sub(s) || ia != a || iflags != f {
                return Err(Error::AlreadyMapped { addr: is.max(s) });
            }
        }
        self.remove(s, e);
        self.0.push((s, e, pa, a, f));
        self.normalize();
        Ok(())
    }

    fn remove(&mut self, s: u64, e: u64) {
        let mut out = Vec::new();
        for &(is, ie, pa, a, f) in &self.0 {
            if ie <= s || is >= e {
                out.push((is, ie, pa, a, f));
                continue;
            }
            if is < s {
                out.push((is, s, pa, a, f));
            }
            if ie > e {
                out.push((e, ie, pa + (e - is), a, f));
            }
        }
        self.0 = out;
    }

    fn change(&mut self, s: u64, e: u64, a: Attributes) -> Result<(), Error> {
        let mut at = s;
        for &(is, ie, ..) in self.overlapping(s, e) {
            if is > at {
                return Err(Error::NotMapped { addr: at });
            }
            at = ie;
        }
        if at < e {
            return Err(Error::NotMapped { addr: at });
        }
        let changed: Vec<_> = self
            .overlapping(s, e)
            .map(|&(is, ie, pa, _, f)| {
                let (cs, ce) = (is.max(s), ie.min(e));
                (cs, ce, pa + (cs - is), a, f)
            })
            .collect();
        self.remove(s, e);
        self.0.extend(changed);
        self.normalize();
        Ok(())
    }

    fn normalize(&mut self) {
        self.0.sort_by_key(|i| i.0);
        let mut out: Vec<(u64, u64, u64, Attributes, MapFlags)> = Vec::new();
        for &i in &self.0 {
            match out.last_mut() {
                Some(l) if l.1 == i.0 && l.2 + (l.1 - l.0) == i.2 && l.3 == i.3 && l.4 == i.4 => {
                    l.1 = i.1
                }
                _ => out.push(i),
            }
        }
        self.0 = out;
    }
}

#[derive(Clone, Debug)]
enum Op {
    Map {
        s: u64,
        e: u64,
        pa: u64,
        a: Attributes,
        f: MapFlags,
    },
    Unmap {
        s: u64,
        e: u64,
    },
    Change {
        s: u64,
        e: u64,
        a: Attributes,
    },
    Collapse {
        s: u64,
        e: u64,
    },
}

const WINDOW: u64 = 4 * G1;

/// Addresses near block boundaries.
fn address() -> impl Strategy<Value = u64> + Clone {
    let anchor = prop::sample::select(vec![
        0,
        G1 - M2,
        G1,
        2 * G1 - K64,
        2 * G1 + M2,
        3 * G1,
        3 * G1 + M32,
    ]);
    let unit = prop::sample::select(vec![K4, K64, M2]);
    (anchor, unit, -4i64..5)
        .prop_map(|(a, u, k)| (a as i64 + k * u as i64).clamp(0, (WINDOW - K4) as i64) as u64)
}

fn length() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![
        (1u64..20).prop_map(|n| n * K4),
        (1u64..4).prop_map(|n| n * K64),
        (1u64..20).prop_map(|n| n * M2),
        (1u64..3).prop_map(|n| n * G1),
        Just(M2 + K4),
        Just(G1 + M2 + K4),
    ]
}

fn attributes(stage2: bool) -> impl Strategy<Value = Attributes> {
    let normal = MemoryType::NormalWriteBack;
    // Mostly RW and RO, so later changes often restore earlier ones (and collapse).
    let mut choices = vec![
        Attributes::RW,
        Attributes::RW,
        Attributes::RW,
        Attributes::RO,
        Attributes::RO,
        Attributes::RX,
        Attributes::DEVICE,
        Attributes::new(Access::READ, MemoryType::NormalNonCacheable),
    ];
    if stage2 {
        choices.push(Attributes::new(Access::WRITE, normal));
        choices.push(Attributes::new(Access::NONE, normal));
        choices.push(Attributes::new(
            Access::READ | Access::WRITE | Access::EXECUTE,
            normal,
        ));
    }
    prop::sample::select(choices)
}

fn op(stage2: bool) -> impl Strategy<Value = Op> {
    let range = || (address(), length()).prop_map(|(s, len)| (s, (s + len).min(WINDOW)));
    let flags = prop::sample::select(vec![
        MapFlags::NONE,
        MapFlags::NONE,
        MapFlags::NONE,
        MapFlags::NO_BLOCK_MAPPINGS,
        MapFlags::NO_CONT_MAPPINGS,
    ]);
    // Output addresses: the identity (everything aligned), shifted by pages or blocks.
    let shift = prop::sample::select(vec![0u64, 0, K4, K64, M2, G1]);
    prop_oneof![
        4 => (range(), shift, attributes(stage2), flags).prop_map(|((s, e), d, a, f)| {
            // Forced pages only on small ranges, to keep the pool and the checks small.
            let f = if f == MapFlags::NO_BLOCK_MAPPINGS && e - s > M32 { MapFlags::NONE } else { f };
            // Page-aligned output forces pages too.
            let d = if d % M2 != 0 && e - s > M32 { M2 } else { d };
            Op::Map { s, e, pa: s + d, a, f }
        }),
        2 => range().prop_map(|(s, e)| Op::Unmap { s, e }),
        4 => (range(), attributes(stage2)).prop_map(|((s, e), a)| Op::Change { s, e, a }),
        1 => range().prop_map(|(s, e)| Op::Collapse { s, e }),
        // Whole aligned blocks back to RW: undoes earlier edits, so tables collapse.
        2 => (address(), prop::sample::select(vec![M2, G1])).prop_map(|(s, unit)| {
            let s = s & !(unit - 1);
            Op::Change { s, e: (s + unit).min(WINDOW), a: Attributes::RW }
        }),
    ]
}

/// A large block mapping first, so that most later edits land on mapped memory.
fn base_map() -> impl Strategy<Value = Op> {
    let start = prop::sample::select(vec![0, M2, G1 - M32, G1]);
    let len = prop::sample::select(vec![G1, G1 + M2, 2 * G1, 3 * G1]);
    let shift = prop::sample::select(vec![0, 0, M2, G1]);
    (start, len, shift).prop_map(|(s, len, d)| Op::Map {
        s,
        e: (s + len).min(WINDOW),
        pa: s + d,
        a: Attributes::RW,
        f: MapFlags::NONE,
    })
}

fn scenario() -> impl Strategy<Value = (u8, SplitStrategy, bool, Vec<Op>)> {
    (0u8..3, prop::bool::ANY, prop::bool::ANY).prop_flat_map(|(regime, bbml2, range)| {
        let split = if bbml2 {
            SplitStrategy::Bbml2
        } else {
            SplitStrategy::BreakBeforeMake
        };
        let ops = (base_map(), prop::collection::vec(op(regime != 0), 1..16)).prop_map(
            |(base, mut ops)| {
                ops.insert(0, base);
                ops
            },
        );
        (Just(regime), Just(split), Just(range), ops)
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_model((regime, split, tlbi_range, ops) in scenario()) {
        let regime = match regime {
            0 => Regime::el2(),
            1 => Regime::stage2(32).unwrap(),
            _ => Regime::stage2(40).unwrap(),
        };
        let mut c = Checked::new(regime, caps(split, tlbi_range));
        let mut model = Model::default();
        for op in ops {
            let (engine, expected) = match op {
                Op::Map { s, e, pa, a, f } => (
                    c.run(|pt| pt.map(s..e, PhysAddr(pa), a, f)).map(drop),
                    model.map(s, e, pa, a, f),
                ),
                Op::Unmap { s, e } => {
                    model.remove(s, e);
                    (c.run(|pt| pt.unmap(s..e)).map(drop), Ok(()))
                }
                Op::Change { s, e, a } => (c.run(|pt| pt.change_attrs(s..e, a)).map(drop), model.change(s, e, a)),
                Op::Collapse { s, e } => (c.run(|pt| pt.collapse(s..e)).map(drop), Ok(())),
            };
            prop_assert_eq!(engine, expected);
            let mut walked = Model(
                dump(&c.pt).into_iter().map(|r| (r.ia.start, r.ia.end, r.pa.0, r.attrs, r.flags)).collect(),
            );
            walked.normalize();
            prop_assert_eq!(&walked.0, &model.0);
        }
    }
}
