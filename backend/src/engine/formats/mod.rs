//! Output formats, written natively from the entry stream.

pub mod cpio;
pub mod format;
pub mod gzip;
pub mod pargz;
pub mod spool;
pub mod squashfs;
pub mod tar;
