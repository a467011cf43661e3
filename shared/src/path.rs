//! Key paths such as `services[1].capabilities[0]`.

use std::fmt;

/// One step into a document: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Where a value sits in a document, from the root down.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct KeyPath(Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        KeyPath(segs)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        KeyPath(segs)
    }

    pub fn segs(&self) -> &[Seg] {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(key) if i == 0 => f.write_str(key)?,
                Seg::Key(key) => write!(f, ".{key}")?,
                Seg::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Builds a path from a compact literal, for tests and checks:
/// `path!["services", 1, "capabilities", 0]`.
#[macro_export]
macro_rules! path {
    ($($seg:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut p = $crate::KeyPath::root();
        $(p = $crate::path::IntoSeg::push_onto($seg, &p);)*
        p
    }};
}

/// Lets `path!` accept both keys and indices.
pub trait IntoSeg {
    fn push_onto(self, path: &KeyPath) -> KeyPath;
}

impl IntoSeg for &str {
    fn push_onto(self, path: &KeyPath) -> KeyPath {
        path.key(self)
    }
}

impl IntoSeg for usize {
    fn push_onto(self, path: &KeyPath) -> KeyPath {
        path.index(self)
    }
}
