//! kiln's build engine and service, as a library.
//!
//! The `kiln` binary (`src/main.rs`) is a thin command-line layer over this
//! crate. The engine (`engine`) does no HTTP; the service layers arrive later
//! and sit on top of it.

pub mod engine;
pub mod service;
