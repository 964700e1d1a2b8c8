//! The PSCI node (`arm,psci-1.0`, `arm,psci-0.2` or `arm,psci`): its conduit and version.

use super::DtError;
use super::error::DtText;
use super::node::Node;
use crate::info::{Conduit, Psci};

/// The compatibles that identify a PSCI node (Linux psci_of_match).
pub(super) const PSCI_COMPATIBLES: [&str; 3] = ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"];

pub(super) fn is_psci(node: &Node<'_, '_, '_>) -> bool {
    PSCI_COMPATIBLES.iter().any(|c| node.is_compatible(c))
}

/// Reads `method` and the version: the highest `arm,psci-X.Y` compatible, or 0.1 for a
/// node that is only `arm,psci` (the pre-0.2 binding).
///
/// # Errors
/// [`DtError::MissingProperty`] without `method`, [`DtError::BadPsciMethod`] for a
/// method other than "smc" or "hvc".
pub(super) fn read_psci(node: &Node<'_, '_, '_>) -> Result<Psci, DtError> {
    let method = node
        .property("method")
        .ok_or_else(|| node.missing("method"))?;
    let conduit = match super::bytes::value_str(method) {
        Some("smc") => Conduit::Smc,
        Some("hvc") => Conduit::Hvc,
        _ => {
            return Err(DtError::BadPsciMethod {
                node: node.path(),
                method: DtText::lossy(method),
            });
        }
    };
    let version = node
        .compatibles()
        .filter_map(|c| c.strip_prefix(b"arm,psci-"))
        .filter_map(parse_version)
        .max()
        .unwrap_or((0, 1));
    Ok(Psci { conduit, version })
}

/// `X.Y` as (X, Y).
fn parse_version(text: &[u8]) -> Option<(u16, u16)> {
    let text = core::str::from_utf8(text).ok()?;
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}
