//! Symbolic uids and gids: a container's name stands for a number.

use std::collections::HashMap;

use crate::model::{IdRef, Spec};

/// The first number linuxkit hands out to a container name.
pub const FIRST_ID: u32 = 100;

/// Numbers for container names, allocated from 100 across `onboot`, then
/// `onshutdown`, then `services`. A name that repeats keeps its last number.
#[derive(Debug, Clone, Default)]
pub struct IdTable {
    ids: HashMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    UnknownName(String),
    OutOfRange(i64),
    WrongType(&'static str),
}

impl std::fmt::Display for IdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdError::UnknownName(name) => write!(
                f,
                "no container named `{name}` to take an id from; a name given as a uid or gid must be an onboot, onshutdown or service name"
            ),
            IdError::OutOfRange(n) => write!(f, "id {n} is outside 0..=4294967295"),
            IdError::WrongType(kind) => {
                write!(f, "expected an integer or a container name, found {kind}")
            }
        }
    }
}

impl std::error::Error for IdError {}

impl IdTable {
    /// Allocates numbers over several specs as if they were merged.
    pub fn for_specs<'a>(specs: impl IntoIterator<Item = &'a Spec> + Clone) -> IdTable {
        let mut table = IdTable::default();
        let mut next = FIRST_ID;
        let sections: [fn(&Spec) -> &[crate::ImageEntry]; 3] =
            [|s| &s.onboot, |s| &s.onshutdown, |s| &s.services];
        for section in sections {
            for spec in specs.clone() {
                for entry in section(spec) {
                    table.ids.insert(entry.name.clone(), next);
                    next = next.saturating_add(1);
                }
            }
        }
        table
    }

    pub fn resolve(&self, id: &IdRef) -> Result<u32, IdError> {
        match id {
            IdRef::Num(n) => u32::try_from(*n).map_err(|_| IdError::OutOfRange(*n)),
            IdRef::Name(name) if name.is_empty() || name == "root" => Ok(0),
            IdRef::Name(name) => self
                .ids
                .get(name)
                .copied()
                .ok_or_else(|| IdError::UnknownName(name.clone())),
            IdRef::Invalid(kind) => Err(IdError::WrongType(kind)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageEntry;

    fn entry(name: &str) -> ImageEntry {
        ImageEntry {
            name: name.into(),
            image: "a/b:1".into(),
            ..ImageEntry::default()
        }
    }

    #[test]
    fn numbers_run_from_100_across_sections_and_later_wins() {
        let spec = Spec {
            onboot: vec![entry("a"), entry("b")],
            onshutdown: vec![entry("c")],
            services: vec![entry("d"), entry("a")],
            ..Spec::default()
        };
        let table = IdTable::for_specs([&spec]);
        let id = |n: &str| table.resolve(&IdRef::Name(n.into()));
        assert_eq!(id("b"), Ok(101));
        assert_eq!(id("c"), Ok(102));
        assert_eq!(id("d"), Ok(103));
        assert_eq!(id("a"), Ok(104));
        assert_eq!(id("root"), Ok(0));
        assert_eq!(id(""), Ok(0));
        assert_eq!(table.resolve(&IdRef::Num(7)), Ok(7));
        assert_eq!(id("x"), Err(IdError::UnknownName("x".into())));
    }

    #[test]
    fn merged_specs_number_by_section_first() {
        let a = Spec {
            onboot: vec![entry("a")],
            services: vec![entry("s1")],
            ..Spec::default()
        };
        let b = Spec {
            onboot: vec![entry("b")],
            ..Spec::default()
        };
        let table = IdTable::for_specs([&a, &b]);
        assert_eq!(table.resolve(&IdRef::Name("b".into())), Ok(101));
        assert_eq!(table.resolve(&IdRef::Name("s1".into())), Ok(102));
    }
}
