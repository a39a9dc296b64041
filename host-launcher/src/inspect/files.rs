//! How inspection reads a guest: [`GuestFiles`], the few questions it asks (what is at
//! a path, with or without following symlinks; a small file's text; a link's target),
//! answered over a [`Session`] by [`Mounted`] and, in unit tests, by an in-memory tree.
//!
//! [`Mounted`] follows symlinks **across the guest's own mounts**: the appliance
//! resolves a path inside the one filesystem that holds it, so a link like
//! `/etc/os-release -> ../usr/lib/os-release` whose target lives on a separately
//! mounted `/usr` (Container Linux, or any guest whose `/usr` has its own partition)
//! would end on the root filesystem's empty `/usr` directory. Here each component is
//! looked at with `lstat` and every symlink's target spliced into the path still to walk,
//! so the walk crosses into whatever is mounted where the target points. The walk is
//! bounded: at most [`MAX_LINKS`] links, [`MAX_COMPONENTS`] components, targets of at
//! most [`MAX_TARGET`] bytes; a cycle is "not found", like a dangling link.

use super::{MAX_GUEST_FILE, soft};
use crate::error::Result;
use crate::session::Session;
use std::collections::HashMap;
use wire::FileType;

/// Most symlinks followed while resolving one path (Linux's own limit).
pub const MAX_LINKS: usize = 40;
/// Most path components walked for one path.
pub const MAX_COMPONENTS: usize = 4096;
/// Longest symlink target taken, in bytes.
pub const MAX_TARGET: usize = 4096;

/// The questions inspection asks about a guest's files.
pub trait GuestFiles {
    /// The type of what is at `path` (following symlinks, also in the last component,
    /// when `follow`); `None` when nothing is there (or a link dangles or loops).
    fn kind(&mut self, path: &str, follow: bool) -> Result<Option<FileType>>;
    /// The first [`MAX_GUEST_FILE`] bytes of the regular file at `path` (symlinks
    /// followed), as lossy UTF-8; `None` when it is not a readable regular file.
    fn read(&mut self, path: &str) -> Result<Option<String>>;
    /// The first `len` bytes of the regular file at `path` (symlinks followed).
    fn head(&mut self, path: &str, len: u64) -> Result<Option<Vec<u8>>>;
    /// The target of the symlink at `path` (not followed); `None` if it is not one.
    fn readlink(&mut self, path: &str) -> Result<Option<String>>;

    /// Is `path` a regular file?
    fn is_file(&mut self, path: &str, follow: bool) -> Result<bool> {
        Ok(self.kind(path, follow)? == Some(FileType::Regular))
    }
    /// Is `path` a directory?
    fn is_dir(&mut self, path: &str, follow: bool) -> Result<bool> {
        Ok(self.kind(path, follow)? == Some(FileType::Directory))
    }
}

/// The components of an absolute or relative path (empty ones and `.` dropped).
fn components(p: &str) -> Vec<&str> {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// The guest as the session has it mounted (the root at `/`, its other filesystems
/// below), with symlinks followed across mounts. Answers are cached: the mounts must
/// not change while a `Mounted` is in use.
pub struct Mounted<'s> {
    s: &'s mut Session,
    lstat: HashMap<String, Option<FileType>>,
    links: HashMap<String, Option<String>>,
}

impl<'s> Mounted<'s> {
    pub fn new(s: &'s mut Session) -> Self {
        Mounted {
            s,
            lstat: HashMap::new(),
            links: HashMap::new(),
        }
    }

    /// The session underneath (for calls that are not file questions).
    pub fn session(&mut self) -> &mut Session {
        self.s
    }

    fn lstat_kind(&mut self, path: &str) -> Result<Option<FileType>> {
        if let Some(k) = self.lstat.get(path) {
            return Ok(*k);
        }
        let k = soft(self.s.lstat(path))?.map(|st| st.file_type);
        self.lstat.insert(path.to_string(), k);
        Ok(k)
    }

    fn link_target(&mut self, path: &str) -> Result<Option<String>> {
        if let Some(t) = self.links.get(path) {
            return Ok(t.clone());
        }
        let t = soft(self.s.readlink(path))?.filter(|t| !t.is_empty() && t.len() <= MAX_TARGET);
        self.links.insert(path.to_string(), t.clone());
        Ok(t)
    }

    /// `path` with every symlink resolved (the last component too when `follow`), and
    /// what is there; `None` when a component is missing, a non-directory is walked
    /// through, or a bound is hit.
    pub fn resolve(&mut self, path: &str, follow: bool) -> Result<Option<(String, FileType)>> {
        let mut todo: Vec<String> = components(path)
            .into_iter()
            .rev()
            .map(str::to_string)
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut links = 0usize;
        let mut walked = 0usize;
        let mut kind = FileType::Directory;
        while let Some(c) = todo.pop() {
            walked += 1;
            if walked > MAX_COMPONENTS {
                return Ok(None);
            }
            if kind != FileType::Directory {
                return Ok(None);
            }
            if c == ".." {
                done.pop();
                kind = FileType::Directory;
                continue;
            }
            let here = format!("/{}", [done.join("/"), c.clone()].join("/"));
            let here = here.replace("//", "/");
            let Some(k) = self.lstat_kind(&here)? else {
                return Ok(None);
            };
            let last = todo.is_empty();
            if k == FileType::Symlink && (follow || !last) {
                links += 1;
                if links > MAX_LINKS {
                    return Ok(None);
                }
                let Some(target) = self.link_target(&here)? else {
                    return Ok(None);
                };
                if target.starts_with('/') {
                    done.clear();
                }
                todo.extend(components(&target).into_iter().rev().map(str::to_string));
                if todo.len() > MAX_COMPONENTS {
                    return Ok(None);
                }
                kind = FileType::Directory;
                continue;
            }
            done.push(c);
            kind = k;
        }
        Ok(Some((format!("/{}", done.join("/")), kind)))
    }
}

impl GuestFiles for Mounted<'_> {
    fn kind(&mut self, path: &str, follow: bool) -> Result<Option<FileType>> {
        Ok(self.resolve(path, follow)?.map(|(_, k)| k))
    }

    fn read(&mut self, path: &str) -> Result<Option<String>> {
        Ok(self
            .head(path, MAX_GUEST_FILE)?
            .map(|d| String::from_utf8_lossy(&d).into_owned()))
    }

    fn head(&mut self, path: &str, len: u64) -> Result<Option<Vec<u8>>> {
        match self.resolve(path, true)? {
            Some((real, FileType::Regular)) => soft(self.s.pread(&real, 0, len)),
            _ => Ok(None),
        }
    }

    fn readlink(&mut self, path: &str) -> Result<Option<String>> {
        let Some((real, FileType::Symlink)) = self.resolve(path, false)? else {
            return Ok(None);
        };
        self.link_target(&real)
    }
}

#[cfg(test)]
pub mod testing {
    //! An in-memory guest for unit tests: paths to files, directories and symlinks,
    //! resolved like [`super::Mounted`] does (one tree, no mounts needed).
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct Tree {
        pub nodes: BTreeMap<String, Node>,
    }

    pub enum Node {
        File(Vec<u8>),
        Dir,
        Link(String),
    }

    impl Tree {
        pub fn new() -> Self {
            let mut t = Tree::default();
            t.nodes.insert("/".into(), Node::Dir);
            t
        }
        fn parents(&mut self, p: &str) {
            let mut cur = String::new();
            let comps = components(p);
            for c in &comps[..comps.len().saturating_sub(1)] {
                cur = format!("{cur}/{c}");
                self.nodes.entry(cur.clone()).or_insert(Node::Dir);
            }
        }
        pub fn file(&mut self, p: &str, data: &str) -> &mut Self {
            self.parents(p);
            self.nodes
                .insert(p.into(), Node::File(data.as_bytes().to_vec()));
            self
        }
        pub fn bytes(&mut self, p: &str, data: &[u8]) -> &mut Self {
            self.parents(p);
            self.nodes.insert(p.into(), Node::File(data.to_vec()));
            self
        }
        pub fn dir(&mut self, p: &str) -> &mut Self {
            self.parents(p);
            self.nodes.insert(p.into(), Node::Dir);
            self
        }
        pub fn link(&mut self, p: &str, target: &str) -> &mut Self {
            self.parents(p);
            self.nodes.insert(p.into(), Node::Link(target.into()));
            self
        }

        fn resolve(&self, path: &str, follow: bool) -> Option<(String, &Node)> {
            let mut todo: Vec<String> = components(path)
                .into_iter()
                .rev()
                .map(str::to_string)
                .collect();
            let mut done: Vec<String> = Vec::new();
            let mut links = 0;
            let mut node = self.nodes.get("/")?;
            while let Some(c) = todo.pop() {
                if !matches!(node, Node::Dir) {
                    return None;
                }
                if c == ".." {
                    done.pop();
                    node = self.nodes.get("/")?;
                    continue;
                }
                let here = format!("/{}", [done.join("/"), c.clone()].join("/")).replace("//", "/");
                let n = self.nodes.get(&here)?;
                if let Node::Link(t) = n
                    && (follow || !todo.is_empty())
                {
                    links += 1;
                    if links > MAX_LINKS {
                        return None;
                    }
                    if t.starts_with('/') {
                        done.clear();
                    }
                    todo.extend(components(t).into_iter().rev().map(str::to_string));
                    node = self.nodes.get("/")?;
                    continue;
                }
                done.push(c);
                node = n;
            }
            Some((format!("/{}", done.join("/")), node))
        }
    }

    impl GuestFiles for Tree {
        fn kind(&mut self, path: &str, follow: bool) -> Result<Option<FileType>> {
            Ok(self.resolve(path, follow).map(|(_, n)| match n {
                Node::File(_) => FileType::Regular,
                Node::Dir => FileType::Directory,
                Node::Link(_) => FileType::Symlink,
            }))
        }
        fn read(&mut self, path: &str) -> Result<Option<String>> {
            Ok(self
                .head(path, MAX_GUEST_FILE)?
                .map(|d| String::from_utf8_lossy(&d).into_owned()))
        }
        fn head(&mut self, path: &str, len: u64) -> Result<Option<Vec<u8>>> {
            Ok(match self.resolve(path, true) {
                Some((_, Node::File(d))) => Some(d[..d.len().min(len as usize)].to_vec()),
                _ => None,
            })
        }
        fn readlink(&mut self, path: &str) -> Result<Option<String>> {
            Ok(match self.resolve(path, false) {
                Some((_, Node::Link(t))) => Some(t.clone()),
                _ => None,
            })
        }
    }

    #[test]
    fn tree_resolves_like_mounted() {
        let mut t = Tree::new();
        t.link("/etc/os-release", "../usr/lib/os-release")
            .file("/usr/lib/os-release", "ID=x\n")
            .link("/bin", "usr/bin")
            .file("/usr/bin/sh", "x")
            .link("/a", "/b")
            .link("/b", "/a")
            .link("/abs", "/usr/./lib//os-release");
        assert_eq!(
            t.read("/etc/os-release").unwrap().as_deref(),
            Some("ID=x\n")
        );
        assert_eq!(t.read("/abs").unwrap().as_deref(), Some("ID=x\n"));
        assert!(t.is_file("/bin/sh", true).unwrap());
        assert!(!t.is_dir("/bin", false).unwrap());
        assert_eq!(t.readlink("/bin").unwrap().as_deref(), Some("usr/bin"));
        assert_eq!(t.kind("/a", true).unwrap(), None);
        assert_eq!(t.kind("/a", false).unwrap(), Some(FileType::Symlink));
        assert_eq!(t.kind("/usr/lib/os-release/x", true).unwrap(), None);
    }
}
