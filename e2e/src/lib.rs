//! Harness for kiln's end-to-end tests: fixture images built from Debian
//! packages and the real components the tests start.
//!
//! * [`fixtures`] builds the OCI image layouts (kernel, init, runc, busybox
//!   payloads, a multi-arch index) reproducibly from `.deb` files.
//! * [`registry`] runs Debian's `docker-registry` on loopback and pushes
//!   layouts to it with skopeo.
//! * [`sign`] makes cosign-compatible signatures with openssl only, so kiln's
//!   verifier is checked against signatures it did not make.
//! * [`seeded`] puts it together: a registry holding every fixture, signed
//!   by a trusted key, a rogue key, or not at all.
//! * [`service`] runs the real `kiln serve` and talks to its API.
//! * [`firmware`] makes QEMU command lines that boot disks, ISOs and UKIs
//!   through OVMF or SeaBIOS.
//! * [`web`] runs the real `kiln serve` and the Node/Chromium drivers of the
//!   browser tests.

pub mod debs;
pub mod firmware;
pub mod fixtures;
pub mod kmod;
pub mod oci;
pub mod qemu;
pub mod registry;
pub mod seeded;
pub mod service;
pub mod sign;
pub mod swtpm;
pub mod tarball;
pub mod tools;
pub mod web;
