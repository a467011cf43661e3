//! qcow2 (version 2, 64 KiB clusters) around a [`SparseDisk`]: only
//! clusters holding data are stored. Layout, in clusters: the header, the
//! refcount table, the refcount blocks, the L1 table, the L2 tables, then
//! the data, each referenced once (refcount 1, so every pointer carries
//! QCOW_OFLAG_COPIED).

use std::io::{self, Write};

use super::sparse::SparseDisk;

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// 8-byte entries per L2 table (and per refcount table cluster).
const L2_ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts per refcount block.
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER / 2;
const COPIED: u64 = 1 << 63;

/// Writes `disk` as qcow2 to `out`.
pub fn write<W: Write>(disk: &SparseDisk, out: &mut W) -> io::Result<()> {
    let guest_clusters = disk.len().div_ceil(CLUSTER);
    let data: Vec<u64> = (0..guest_clusters)
        .filter(|c| disk.has_data(c * CLUSTER, CLUSTER))
        .collect();
    let l1_entries = guest_clusters.div_ceil(L2_ENTRIES).max(1);
    let mut l2_used: Vec<u64> = data.iter().map(|c| c / L2_ENTRIES).collect();
    l2_used.dedup();
    let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER);

    // Refcount blocks must cover every cluster, themselves included.
    let fixed = 1 + 1 + l1_clusters + l2_used.len() as u64 + data.len() as u64;
    let mut blocks = 1;
    while (fixed + blocks).div_ceil(REFCOUNTS_PER_BLOCK) > blocks {
        blocks += 1;
    }
    let total = fixed + blocks;
    if blocks > L2_ENTRIES {
        return Err(io::Error::other(
            "disk too large for one refcount table cluster",
        ));
    }
    let reftable_at = 1;
    let blocks_at = 2;
    let l1_at = blocks_at + blocks;
    let l2_at = l1_at + l1_clusters;
    let data_at = l2_at + l2_used.len() as u64;

    let mut header = vec![0u8; CLUSTER as usize];
    header[..4].copy_from_slice(b"QFI\xfb");
    header[4..8].copy_from_slice(&2u32.to_be_bytes());
    header[20..24].copy_from_slice(&CLUSTER_BITS.to_be_bytes());
    header[24..32].copy_from_slice(&disk.len().to_be_bytes());
    header[36..40].copy_from_slice(&(l1_entries as u32).to_be_bytes());
    header[40..48].copy_from_slice(&(l1_at * CLUSTER).to_be_bytes());
    header[48..56].copy_from_slice(&(reftable_at * CLUSTER).to_be_bytes());
    header[56..60].copy_from_slice(&1u32.to_be_bytes());
    out.write_all(&header)?;

    let mut cluster = vec![0u8; CLUSTER as usize];
    for b in 0..blocks {
        cluster[b as usize * 8..b as usize * 8 + 8]
            .copy_from_slice(&((blocks_at + b) * CLUSTER).to_be_bytes());
    }
    out.write_all(&cluster)?;
    for b in 0..blocks {
        cluster.fill(0);
        for i in 0..REFCOUNTS_PER_BLOCK {
            if b * REFCOUNTS_PER_BLOCK + i < total {
                cluster[i as usize * 2..i as usize * 2 + 2].copy_from_slice(&1u16.to_be_bytes());
            }
        }
        out.write_all(&cluster)?;
    }

    let mut l1 = vec![0u8; (l1_clusters * CLUSTER) as usize];
    for (n, table) in l2_used.iter().enumerate() {
        let at = ((l2_at + n as u64) * CLUSTER) | COPIED;
        l1[*table as usize * 8..*table as usize * 8 + 8].copy_from_slice(&at.to_be_bytes());
    }
    out.write_all(&l1)?;
    let mut next = 0;
    for table in &l2_used {
        cluster.fill(0);
        while next < data.len() && data[next] / L2_ENTRIES == *table {
            let at = ((data_at + next as u64) * CLUSTER) | COPIED;
            let i = (data[next] % L2_ENTRIES) as usize;
            cluster[i * 8..i * 8 + 8].copy_from_slice(&at.to_be_bytes());
            next += 1;
        }
        out.write_all(&cluster)?;
    }
    for c in &data {
        disk.read_at(c * CLUSTER, &mut cluster);
        out.write_all(&cluster)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_only_clusters_with_data() {
        let mut disk = SparseDisk::new(3 * CLUSTER + 512);
        disk.write_at(CLUSTER + 7, b"kiln").unwrap();
        let mut out = Vec::new();
        write(&disk, &mut out).unwrap();
        // header, reftable, 1 refcount block, L1, one L2, one data cluster
        assert_eq!(out.len() as u64, 6 * CLUSTER);
        let l2 = &out[4 * CLUSTER as usize..5 * CLUSTER as usize];
        let entry = u64::from_be_bytes(l2[8..16].try_into().unwrap());
        assert_eq!(entry, (5 * CLUSTER) | COPIED);
        assert_eq!(
            &out[5 * CLUSTER as usize + 7..5 * CLUSTER as usize + 11],
            b"kiln"
        );
    }
}
