//! `passthrough=PATH[,PATH...]`: the host device-tree nodes to give the guest, by full
//! path (`/pl031@9010000,/soc/serial@1c090000`).
//!
//! A path starts with `/` and names each node with its unit address, as the DT writes
//! it (the guest loader looks it up exactly). Node names may themselves hold a `,`, so a
//! `,` separates two paths only where a `/` follows it. Only the syntax is checked
//! here; whether the node exists, and whether it may be given, is the guest loader's
//! decision (`guest_loader::devices`).

use core::fmt;

use arrayvec::ArrayVec;

use super::ValueProblem;

/// Most paths one `passthrough=` names.
pub const MAX_PASSTHROUGH_PATHS: usize = 16;

/// The paths of `passthrough=`, borrowed from the command line, in the order given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassthroughPaths<'a> {
    paths: ArrayVec<&'a str, MAX_PASSTHROUGH_PATHS>,
}

impl<'a> PassthroughPaths<'a> {
    /// Reads the option's value (see the module docs).
    ///
    /// # Errors
    /// [`ValueProblem::Empty`], [`ValueProblem::BadPath`] naming the first bad path,
    /// [`ValueProblem::TooMany`].
    pub(super) fn parse(value: &'a str) -> Result<Self, ValueProblem> {
        if value.is_empty() {
            return Err(ValueProblem::Empty);
        }
        let mut paths = ArrayVec::new();
        for (index, path) in split_paths(value).enumerate() {
            check_path(path).map_err(|reason| ValueProblem::BadPath { index, reason })?;
            paths.try_push(path).map_err(|_| ValueProblem::TooMany {
                limit: MAX_PASSTHROUGH_PATHS,
            })?;
        }
        Ok(Self { paths })
    }

    /// What the guest loader takes (`guest_loader::plan_guest_with_passthrough`).
    pub fn as_slice(&self) -> &[&'a str] {
        &self.paths
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.paths.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// The option's value: the paths separated by `,` (empty when there are none), which
/// `passthrough=` reads back to the same paths.
impl fmt::Display for PassthroughPaths<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut separator = "";
        for path in &self.paths {
            write!(f, "{separator}{path}")?;
            separator = ",";
        }
        Ok(())
    }
}

/// Splits at every `,` that a `/` follows.
fn split_paths(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    core::iter::from_fn(move || {
        let text = rest?;
        match text.find(",/") {
            Some(at) => {
                rest = text.get(at + 1..);
                text.get(..at)
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// What is wrong with one path, if anything.
fn check_path(path: &str) -> Result<(), &'static str> {
    let Some(relative) = path.strip_prefix('/') else {
        return Err("a path starts with '/' (the full path of a host DT node)");
    };
    if relative.is_empty() {
        return Err("the root node is not a device");
    }
    for component in relative.split('/') {
        if component.is_empty() {
            return Err("empty node name ('//' or a trailing '/')");
        }
        if !component.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b',' | b'.' | b'_' | b'+' | b'-' | b'@')
        }) {
            return Err("a node name holds only letters, digits and , . _ + - @");
        }
        if component.ends_with(',') {
            return Err("a node name ends with ','; paths are separated by ','");
        }
        let mut parts = component.split('@');
        let (name, unit, extra) = (parts.next(), parts.next(), parts.next());
        if name.is_none_or(str::is_empty) {
            return Err("a node name is empty before its '@'");
        }
        if unit.is_some_and(str::is_empty) || extra.is_some() {
            return Err("a unit address is one non-empty word after one '@'");
        }
    }
    Ok(())
}
