//! Reading the boot loader a firmware would start from an EFI disk: the
//! first EFI system partition's `EFI/BOOT/BOOTX64.EFI`.

use std::io::{self, Read, Seek, SeekFrom, Write};

use super::gpt::SECTOR;

/// The EFI system partition type C12A7328-F81F-11D2-BA4B-00A0C93EC93B as
/// stored on disk.
const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
];
/// The removable-media boot path on x86_64.
pub const BOOT_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// Larger boot loaders are refused.
const MAX_BOOT_LOADER: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum EspError {
    #[error(transparent)]
    Gpt(#[from] super::gpt::GptError),
    #[error("the disk has no EFI system partition")]
    NoEsp,
    #[error("the EFI system partition: {0}")]
    Fat(io::Error),
    #[error("{BOOT_PATH} is {0} bytes")]
    TooLarge(u64),
}

/// A partition as a stream of its own; writes are refused.
struct Window<R> {
    inner: R,
    start: u64,
    len: u64,
    pos: u64,
}

impl<R: Read + Seek> Read for Window<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let got = self.inner.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl<R> Write for Window<R> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the disk is opened read-only for measuring",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R> Seek for Window<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// The bytes of `EFI/BOOT/BOOTX64.EFI` on the first EFI system partition.
pub fn boot_loader<R: Read + Seek>(disk: &mut R) -> Result<Vec<u8>, EspError> {
    let gpt = super::gpt::gpt_event_data(disk)?;
    let count = u64::from_le_bytes(gpt[92..100].try_into().unwrap_or_default()) as usize;
    let entry_size = (gpt.len() - 100).checked_div(count).unwrap_or(0);
    let esp = gpt[100..]
        .chunks(entry_size.max(1))
        .find(|e| e.len() >= 48 && e[..16] == ESP_TYPE)
        .ok_or(EspError::NoEsp)?;
    let first = u64::from_le_bytes(esp[32..40].try_into().unwrap_or_default());
    let last = u64::from_le_bytes(esp[40..48].try_into().unwrap_or_default());
    if last < first {
        return Err(EspError::NoEsp);
    }
    loader_in(disk, first * SECTOR, (last - first + 1) * SECTOR)
}

/// The bytes of `EFI/BOOT/BOOTX64.EFI` on the FAT volume of `len` bytes
/// at `start`.
pub fn loader_in<R: Read + Seek>(disk: &mut R, start: u64, len: u64) -> Result<Vec<u8>, EspError> {
    let window = Window {
        inner: disk,
        start,
        len,
        pos: 0,
    };
    let fs = fatfs::FileSystem::new(window, fatfs::FsOptions::new()).map_err(EspError::Fat)?;
    let mut file = fs.root_dir().open_file(BOOT_PATH).map_err(EspError::Fat)?;
    let mut out = Vec::new();
    (&mut file)
        .take(MAX_BOOT_LOADER + 1)
        .read_to_end(&mut out)
        .map_err(EspError::Fat)?;
    if out.len() as u64 > MAX_BOOT_LOADER {
        return Err(EspError::TooLarge(out.len() as u64));
    }
    Ok(out)
}
