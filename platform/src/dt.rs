//! Device-tree parsing (work in progress).
