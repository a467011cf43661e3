//! The raw disk a guest sees inside kiln's disk containers (qcow2, fixed
//! and dynamic VHD, monolithic sparse VMDK), read without converting: the
//! container's tables map each guest unit (cluster, block, grain) to a file
//! offset or to zeros. Features kiln does not write (compression, backing
//! files, partial VHD blocks) are refused rather than guessed.

use std::io::{self, Read, Seek, SeekFrom};

const SECTOR: u64 = 512;
/// Tables larger than this are refused (a 64 TiB qcow2 at 64 KiB clusters).
const MAX_UNITS: u64 = 1 << 30;

/// How a disk image is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Raw,
    Qcow2,
    FixedVhd,
    DynamicVhd,
    Vmdk,
}

impl Container {
    /// The kiln output format of an EFI disk stored this way.
    pub fn format(self) -> &'static str {
        match self {
            Container::Raw => "raw-efi",
            Container::Qcow2 => "qcow2-efi",
            Container::FixedVhd => "vhd",
            Container::DynamicVhd => "dynamic-vhd",
            Container::Vmdk => "vmdk",
        }
    }

    /// Recognises a container by its magic numbers (a fixed VHD by its
    /// footer); anything else is taken as raw.
    pub fn sniff<R: Read + Seek>(file: &mut R) -> io::Result<Container> {
        let len = file.seek(SeekFrom::End(0))?;
        let mut head = [0u8; 8];
        if len >= 8 {
            file.seek(SeekFrom::Start(0))?;
            file.read_exact(&mut head)?;
        }
        if head.starts_with(b"QFI\xfb") {
            return Ok(Container::Qcow2);
        }
        if head.starts_with(b"KDMV") {
            return Ok(Container::Vmdk);
        }
        if &head == b"conectix" {
            return Ok(Container::DynamicVhd);
        }
        if len >= SECTOR {
            file.seek(SeekFrom::Start(len - SECTOR))?;
            file.read_exact(&mut head)?;
            if &head == b"conectix" {
                return Ok(Container::FixedVhd);
            }
        }
        Ok(Container::Raw)
    }
}

fn bad(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn read_at<R: Read + Seek>(file: &mut R, at: u64, len: u64) -> io::Result<Vec<u8>> {
    if len > 1 << 30 {
        return Err(bad(format!("a {len}-byte table")));
    }
    let mut buf = vec![0u8; len as usize];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut buf)
        .map_err(|e| bad(format!("reading {len} bytes at {at}: {e}")))?;
    Ok(buf)
}

fn units(len: u64, unit: u64) -> io::Result<usize> {
    let n = len.div_ceil(unit);
    if unit == 0 || n > MAX_UNITS {
        return Err(bad(format!("{len} bytes in units of {unit}")));
    }
    Ok(n as usize)
}

/// The guest's view of a disk image: reads map through the container's
/// tables; unallocated units read as zeros.
pub struct GuestDisk<R> {
    file: R,
    len: u64,
    unit: u64,
    /// File offset of each unit, or `None` for zeros.
    map: Vec<Option<u64>>,
    pos: u64,
}

impl<R: Read + Seek> GuestDisk<R> {
    pub fn open(mut file: R, container: Container) -> io::Result<GuestDisk<R>> {
        let (len, unit, map) = match container {
            Container::Raw => {
                let len = file.seek(SeekFrom::End(0))?;
                (len, len.max(1), vec![Some(0)])
            }
            Container::FixedVhd => {
                let len = file
                    .seek(SeekFrom::End(0))?
                    .checked_sub(SECTOR)
                    .ok_or_else(|| bad("a VHD shorter than its footer"))?;
                (len, len.max(1), vec![Some(0)])
            }
            Container::Qcow2 => qcow2(&mut file)?,
            Container::DynamicVhd => dynamic_vhd(&mut file)?,
            Container::Vmdk => vmdk(&mut file)?,
        };
        Ok(GuestDisk {
            file,
            len,
            unit,
            map,
            pos: 0,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

type Map = (u64, u64, Vec<Option<u64>>);

fn qcow2<R: Read + Seek>(file: &mut R) -> io::Result<Map> {
    let h = read_at(file, 0, 104)?;
    let version = be32(&h, 4);
    if !(2..=3).contains(&version) {
        return Err(bad(format!("qcow2 version {version}")));
    }
    if be64(&h, 8) != 0 {
        return Err(bad("qcow2 with a backing file"));
    }
    let cluster_bits = be32(&h, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(bad(format!("qcow2 cluster_bits {cluster_bits}")));
    }
    if be32(&h, 32) != 0 {
        return Err(bad("encrypted qcow2"));
    }
    if version == 3 && be64(&h, 72) != 0 {
        return Err(bad("qcow2 with incompatible features"));
    }
    let cluster = 1u64 << cluster_bits;
    let len = be64(&h, 24);
    let n = units(len, cluster)?;
    let per_l2 = cluster / 8;
    let l1_needed = (n as u64).div_ceil(per_l2);
    let l1_size = u64::from(be32(&h, 36));
    if l1_size < l1_needed {
        return Err(bad(format!("qcow2 L1 table of {l1_size} entries")));
    }
    let l1 = read_at(file, be64(&h, 40), l1_needed * 8)?;
    const OFFSET: u64 = 0x00ff_ffff_ffff_fe00;
    let mut map = vec![None; n];
    for t in 0..l1_needed as usize {
        let l2_at = be64(&l1, t * 8) & OFFSET;
        if l2_at == 0 {
            continue;
        }
        let l2 = read_at(file, l2_at, cluster)?;
        for i in 0..per_l2 as usize {
            let Some(slot) = map.get_mut(t * per_l2 as usize + i) else {
                break;
            };
            let entry = be64(&l2, i * 8);
            if entry & (1 << 62) != 0 {
                return Err(bad("qcow2 with compressed clusters"));
            }
            let at = entry & OFFSET;
            // Bit 0 (version 3) marks a cluster that reads as zeros.
            if at != 0 && entry & 1 == 0 {
                *slot = Some(at);
            }
        }
    }
    Ok((len, cluster, map))
}

fn dynamic_vhd<R: Read + Seek>(file: &mut R) -> io::Result<Map> {
    let footer = read_at(file, 0, SECTOR)?;
    if be32(&footer, 60) != 3 {
        return Err(bad(format!(
            "VHD disk type {} (differencing disks are not read)",
            be32(&footer, 60)
        )));
    }
    let len = be64(&footer, 48);
    let header = read_at(file, be64(&footer, 16), 1024)?;
    if &header[..8] != b"cxsparse" {
        return Err(bad("dynamic VHD without its cxsparse header"));
    }
    let block = u64::from(be32(&header, 32));
    if block == 0 || block % SECTOR != 0 {
        return Err(bad(format!("VHD block size {block}")));
    }
    let n = units(len, block)?;
    if (be32(&header, 28) as usize) < n {
        return Err(bad("VHD block table shorter than the disk"));
    }
    let bat = read_at(file, be64(&header, 16), n as u64 * 4)?;
    let bitmap = (block / SECTOR).div_ceil(8).div_ceil(SECTOR) * SECTOR;
    let mut map = vec![None; n];
    for (b, slot) in map.iter_mut().enumerate() {
        let sector = be32(&bat, b * 4);
        if sector == u32::MAX {
            continue;
        }
        let at = u64::from(sector) * SECTOR;
        // A block's sectors are either all present or not stored at all.
        let bits = read_at(file, at, bitmap)?;
        let used = (block / SECTOR) as usize;
        let full = (0..used).all(|s| bits[s / 8] & (0x80 >> (s % 8)) != 0);
        if !full {
            return Err(bad(format!("dynamic VHD block {b} is partly allocated")));
        }
        *slot = Some(at + bitmap);
    }
    Ok((len, block, map))
}

fn vmdk<R: Read + Seek>(file: &mut R) -> io::Result<Map> {
    let h = read_at(file, 0, SECTOR)?;
    let flags = le32(&h, 8);
    // Bits 16 and 17: compressed grains and markers (streamOptimized).
    if flags & (3 << 16) != 0 {
        return Err(bad("VMDK with compressed grains"));
    }
    let capacity = le64(&h, 12);
    let grain_sectors = le64(&h, 20);
    let per_gt = u64::from(le32(&h, 44));
    let gd_at = le64(&h, 56);
    if grain_sectors == 0 || grain_sectors > 1 << 16 || per_gt == 0 || gd_at == u64::MAX {
        return Err(bad("VMDK header"));
    }
    let len = capacity
        .checked_mul(SECTOR)
        .ok_or_else(|| bad("VMDK capacity"))?;
    let grain = grain_sectors * SECTOR;
    let n = units(len, grain)?;
    let tables = (n as u64).div_ceil(per_gt);
    let gd = read_at(file, gd_at * SECTOR, tables * 4)?;
    let mut map = vec![None; n];
    for t in 0..tables as usize {
        let gt_at = u64::from(le32(&gd, t * 4));
        if gt_at == 0 {
            continue;
        }
        let gt = read_at(file, gt_at * SECTOR, per_gt * 4)?;
        for i in 0..per_gt as usize {
            let Some(slot) = map.get_mut(t * per_gt as usize + i) else {
                break;
            };
            // 0: not allocated; 1: an explicitly zeroed grain.
            let sector = u64::from(le32(&gt, i * 4));
            if sector > 1 {
                *slot = Some(sector * SECTOR);
            }
        }
    }
    Ok((len, grain, map))
}

impl<R: Read + Seek> Read for GuestDisk<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let index = (self.pos / self.unit) as usize;
        let within = self.pos % self.unit;
        let n = (buf.len() as u64)
            .min(self.unit - within)
            .min(self.len - self.pos) as usize;
        match self.map.get(index).copied().flatten() {
            Some(at) => {
                self.file.seek(SeekFrom::Start(at + within))?;
                self.file.read_exact(&mut buf[..n]).map_err(|e| {
                    bad(format!(
                        "reading guest offset {} at file offset {}: {e}",
                        self.pos,
                        at + within
                    ))
                })?;
            }
            None => buf[..n].fill(0),
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R> Seek for GuestDisk<R> {
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

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::engine::boot::sparse::SparseDisk;
    use crate::engine::boot::{qcow2, vhd, vmdk};

    /// 5 MiB with data in the first, a middle and the last sector, and a
    /// run crossing the 2 MiB VHD block boundary.
    fn disk() -> SparseDisk {
        let mut d = SparseDisk::new(5 << 20);
        d.write_at(0, b"first").unwrap();
        d.write_at((2 << 20) - 3, b"across").unwrap();
        d.write_at(3 << 20, &[0x5a; 70_000]).unwrap();
        d.write_at((5 << 20) - 4, b"last").unwrap();
        d
    }

    fn raw(d: &SparseDisk) -> Vec<u8> {
        let mut b = vec![0u8; d.len() as usize];
        d.read_at(0, &mut b);
        b
    }

    fn wrapped(container: Container) -> Vec<u8> {
        let d = disk();
        let mut out = Vec::new();
        match container {
            Container::Raw => out = raw(&d),
            Container::Qcow2 => qcow2::write(&d, &mut out).unwrap(),
            Container::FixedVhd => vhd::write_fixed(&d, b"s", &mut out).unwrap(),
            Container::DynamicVhd => vhd::write_dynamic(&d, b"s", &mut out).unwrap(),
            Container::Vmdk => vmdk::write(&d, "d.vmdk", b"s", &mut out).unwrap(),
        }
        out
    }

    const ALL: [Container; 5] = [
        Container::Raw,
        Container::Qcow2,
        Container::FixedVhd,
        Container::DynamicVhd,
        Container::Vmdk,
    ];

    #[test]
    fn every_container_reads_back_the_disk_kiln_wrote() {
        let expected = raw(&disk());
        for c in ALL {
            let mut file = Cursor::new(wrapped(c));
            assert_eq!(Container::sniff(&mut file).unwrap(), c);
            let mut g = GuestDisk::open(file, c).unwrap();
            assert_eq!(g.len(), expected.len() as u64, "{c:?}");
            let mut got = Vec::new();
            g.read_to_end(&mut got).unwrap();
            assert!(got == expected, "{c:?}");
            // A read straddling two units, after a seek.
            g.seek(SeekFrom::Start((2 << 20) - 3)).unwrap();
            let mut six = [0u8; 6];
            g.read_exact(&mut six).unwrap();
            assert_eq!(&six, b"across", "{c:?}");
        }
    }

    #[test]
    fn truncated_or_unsupported_containers_are_errors() {
        for c in [Container::Qcow2, Container::DynamicVhd, Container::Vmdk] {
            let bytes = wrapped(c);
            let short = Cursor::new(bytes[..700].to_vec());
            match GuestDisk::open(short, c) {
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{c:?}: {e}"),
                Ok(mut g) => assert!(g.read_to_end(&mut Vec::new()).is_err(), "{c:?}"),
            }
        }
        let mut q = wrapped(Container::Qcow2);
        q[8..16].copy_from_slice(&4096u64.to_be_bytes());
        let e = GuestDisk::open(Cursor::new(q), Container::Qcow2)
            .err()
            .unwrap();
        assert!(e.to_string().contains("backing file"), "{e}");
        let mut v = wrapped(Container::Vmdk);
        v[8..12].copy_from_slice(&(1u32 << 16 | 1).to_le_bytes());
        let e = GuestDisk::open(Cursor::new(v), Container::Vmdk)
            .err()
            .unwrap();
        assert!(e.to_string().contains("compressed"), "{e}");
    }
}
