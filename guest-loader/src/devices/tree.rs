//! The host tree flattened once, in DT order, so that the assignment can ask about any
//! node by index: its path, parent, subtree, and which node a phandle names.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use dtoolkit::fdt::FdtNode;
use dtoolkit::{Node, Property};

/// One node of the host tree.
pub(crate) struct TreeNode<'a> {
    pub node: FdtNode<'a>,
    /// `/` for the root, `/soc/serial@1000` below it.
    pub path: String,
    pub parent: Option<usize>,
    /// One past the index of the node's last descendant: its subtree is
    /// `index..subtree_end`.
    pub subtree_end: usize,
}

/// What a phandle names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PhandleTarget {
    Node(usize),
    /// Two or more nodes claim the phandle: it names none of them for certain.
    Ambiguous,
}

/// The host tree in preorder (a node's index is below every descendant's).
pub(crate) struct HostTree<'a> {
    nodes: Vec<TreeNode<'a>>,
    by_path: BTreeMap<String, usize>,
    /// Paths two or more nodes share (siblings of one name).
    duplicated: BTreeSet<String>,
    by_phandle: BTreeMap<u32, PhandleTarget>,
}

impl<'a> HostTree<'a> {
    /// Flattens the tree below `root`. An explicit stack: the DT is input, and its depth
    /// must not decide how much of the hypervisor's stack is used.
    pub(crate) fn new(root: FdtNode<'a>) -> Self {
        let mut tree = Self {
            nodes: Vec::new(),
            by_path: BTreeMap::new(),
            duplicated: BTreeSet::new(),
            by_phandle: BTreeMap::new(),
        };
        tree.push(root, String::from("/"), None);
        let mut stack: Vec<(usize, alloc::vec::IntoIter<FdtNode<'a>>)> =
            Vec::from([(0, root.children().collect::<Vec<_>>().into_iter())]);
        while let Some((parent, children)) = stack.last_mut() {
            let parent = *parent;
            let Some(child) = children.next() else {
                stack.pop();
                let end = tree.nodes.len();
                if let Some(done) = tree.nodes.get_mut(parent) {
                    done.subtree_end = end;
                }
                continue;
            };
            let parent_path = tree.nodes.get(parent).map_or("", |p| p.path.as_str());
            let path = if parent_path == "/" {
                alloc::format!("/{}", child.name())
            } else {
                alloc::format!("{parent_path}/{}", child.name())
            };
            let index = tree.push(child, path, Some(parent));
            stack.push((index, child.children().collect::<Vec<_>>().into_iter()));
        }
        tree
    }

    fn push(&mut self, node: FdtNode<'a>, path: String, parent: Option<usize>) -> usize {
        let index = self.nodes.len();
        // Two siblings with one name: the first keeps the path (as a lookup by path
        // would find it), and the path is marked, since a path cannot tell them apart.
        if self.by_path.contains_key(&path) {
            self.duplicated.insert(path.clone());
        } else {
            self.by_path.insert(path.clone(), index);
        }
        for name in ["phandle", "linux,phandle"] {
            let Some(phandle) = node
                .property(name)
                .and_then(|p| <[u8; 4]>::try_from(p.value()).ok())
                .map(u32::from_be_bytes)
            else {
                continue;
            };
            self.by_phandle
                .entry(phandle)
                .and_modify(|target| {
                    if *target != PhandleTarget::Node(index) {
                        *target = PhandleTarget::Ambiguous;
                    }
                })
                .or_insert(PhandleTarget::Node(index));
        }
        self.nodes.push(TreeNode {
            node,
            path,
            parent,
            subtree_end: index + 1,
        });
        index
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn get(&self, index: usize) -> Option<&TreeNode<'a>> {
        self.nodes.get(index)
    }

    /// The node's path (`"?"` for an index out of range, which callers never pass).
    pub(crate) fn path(&self, index: usize) -> &str {
        self.nodes.get(index).map_or("?", |n| n.path.as_str())
    }

    pub(crate) fn node(&self, index: usize) -> Option<FdtNode<'a>> {
        self.nodes.get(index).map(|n| n.node)
    }

    pub(crate) fn index_of(&self, path: &str) -> Option<usize> {
        self.by_path.get(path).copied()
    }

    /// The node `path` names under the rule `platform::dt` (and Linux's
    /// `of_find_node_by_path`) applies, so the hypervisor and the guest loader agree on
    /// which node a `stdout-path` or an alias means: component by component, a child
    /// whose name is the component exactly, else, for a component without a unit
    /// address, the first child whose name before `@` is the component.
    pub(crate) fn resolve(&self, path: &str) -> Option<usize> {
        let mut current = 0;
        for component in path.split('/').filter(|c| !c.is_empty()) {
            let children = || self.children(current);
            let exact = children().find(|&child| self.name(child) == component);
            let by_base = || {
                (!component.contains('@'))
                    .then(|| {
                        children()
                            .find(|&child| self.name(child).split('@').next() == Some(component))
                    })
                    .flatten()
            };
            current = exact.or_else(by_base)?;
        }
        self.nodes.get(current).map(|_| current)
    }

    /// The direct children of the node at `index`, in DT order.
    fn children(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        let within = self.subtree(index);
        within
            .skip(1)
            .filter(move |&child| self.nodes.get(child).and_then(|n| n.parent) == Some(index))
    }

    /// The last component of the node's path (empty for the root).
    fn name(&self, index: usize) -> &str {
        let path = self.path(index);
        path.rsplit('/').next().unwrap_or(path)
    }

    /// Whether another node has the same path as the node at `index`.
    pub(crate) fn is_duplicated(&self, index: usize) -> bool {
        self.duplicated.contains(self.path(index))
    }

    /// The paths two or more nodes share.
    pub(crate) fn duplicated_paths(&self) -> impl Iterator<Item = &str> + '_ {
        self.duplicated.iter().map(String::as_str)
    }

    /// The node a phandle names; `None` when no node has it.
    pub(crate) fn by_phandle(&self, phandle: u32) -> Option<PhandleTarget> {
        self.by_phandle.get(&phandle).copied()
    }

    /// `index` and its descendants.
    pub(crate) fn subtree(&self, index: usize) -> Range<usize> {
        index..self.nodes.get(index).map_or(index, |n| n.subtree_end)
    }

    /// Whether `node` is `ancestor` or lies below it.
    pub(crate) fn is_within(&self, node: usize, ancestor: usize) -> bool {
        self.subtree(ancestor).contains(&node)
    }

    /// The node's ancestors, nearest first, the root last.
    pub(crate) fn ancestors(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        let mut next = self.nodes.get(index).and_then(|n| n.parent);
        core::iter::from_fn(move || {
            let current = next?;
            next = self.nodes.get(current).and_then(|n| n.parent);
            Some(current)
        })
    }

    /// Every node in DT order.
    pub(crate) fn indices(&self) -> Range<usize> {
        0..self.nodes.len()
    }
}
