//! Assembling the root filesystem stream from a validated spec.

pub mod files;
pub mod metadata;
