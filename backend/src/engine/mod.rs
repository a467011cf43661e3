//! The build engine: everything between a validated spec and its outputs.
//! No HTTP lives here; the CLI and the service both call into it.

pub mod boot;
pub mod build;
pub mod bundle;
pub mod flatten;
pub mod formats;
pub mod fs;
pub mod measure;
pub mod provenance;
pub mod publish;
pub mod reference;
pub mod registry;
pub mod sbom;
pub mod store;
pub mod trust;
