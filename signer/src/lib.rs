//! Keys, signing and signature verification for kiln. This is the only
//! crate that touches private keys.
//!
//! * [`keys`]: ECDSA P-256 keys in cosign's encrypted PEM, PKCS#8 and SEC1;
//!   public keys and their fingerprints; passwords from the environment or
//!   the terminal.
//! * [`signer`]: the [`Signer`] trait, with the in-process signer;
//!   [`daemon`]: the signer daemon on a Unix socket and its client.
//! * [`simple_signing`]: cosign's image signature payload; [`dsse`]: DSSE
//!   envelopes and in-toto statements; [`bundle`]: sigstore bundles v0.3.
//! * [`policy`]: the trust policy (TOML) and which images must verify;
//!   [`verify`]: verifying an image's signatures against it.

pub mod bundle;
pub mod daemon;
pub mod dsse;
mod encrypted;
pub mod error;
pub mod keyless;
pub mod keys;
mod pem;
pub mod policy;
mod prompt;
pub mod signer;
pub mod simple_signing;
pub mod verify;

pub use error::{Error, Result};
pub use keys::{Password, PrivateKey, PublicKey};
pub use policy::{PolicyError, Requirement, TrustPolicy, TrustRoot};
pub use signer::{InProcessSigner, Signer};
pub use verify::{verify_image, Reason, Rejection, SignatureManifest, VerifiedSignature};
