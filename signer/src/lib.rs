//! Keys, signing and signature verification for kiln.
//!
//! This crate is the only place in kiln that will hold private keys. It is
//! empty until content trust lands (issue "Step 4"); it exists now so that the
//! workspace has its final shape and the dependency rules in ARCHITECTURE.md
//! hold from the first commit.
