//! Output formats, written natively from the entry stream.

pub mod cpio;
pub mod format;
pub mod gzip;
pub mod pargz;
pub mod squashfs;
pub mod tar;
