//! Assembling the root filesystem stream from a validated spec.

pub mod files;
pub mod kernel;
pub mod metadata;
pub mod output;
pub mod plan;
pub mod rootfs;
