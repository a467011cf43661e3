//! A root filesystem as an ISO 9660 image with Rock Ridge (RRIP 1.10,
//! `RRIP_1991A`) and Joliet, as linuxkit's `genisoimage -l -J -R
//! -joliet-long` makes for `kernel+iso`: no boot record.
//!
//! Primary names are up to 31 d-characters (`-l`), made unique with a
//! `~N` suffix; Rock Ridge carries the real names (NM), modes, owners,
//! link counts (PX), times (TF), symlinks (SL) and device numbers (PN).
//! Joliet names are UCS-2, up to 103 characters. Hard links share one
//! extent. Directories are not relocated below depth 8 (Linux and
//! libisofs read them as they are). Layout is a function of the tree
//! alone: descriptors, path tables, directories, Rock Ridge continuation
//! areas, then file data in directory order, every volume date
//! [`LINUXKIT_EPOCH`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{self, Write};

use crate::engine::formats::spool::{Meta, Node, Spooled};
use crate::engine::fs::LINUXKIT_EPOCH;

const SECTOR: usize = 2048;
const MAX_RECORD: usize = 255;
const CE_LEN: usize = 28;
const PRIMARY_NAME: usize = 31;
const JOLIET_NAME: usize = 103;
const ER_ID: &str = "RRIP_1991A";
const ER_DESCRIPTOR: &str =
    "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SOURCE: &str = "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

#[derive(Debug, thiserror::Error)]
pub enum IsoFsError {
    #[error("`{path}` is {len} bytes; an ISO 9660 extent holds at most 4 GiB - 1")]
    FileTooLarge { path: String, len: u64 },
    #[error("`{path}`: mtime {mtime} is outside ISO 9660's years 1900-2155")]
    Date { path: String, mtime: u64 },
    #[error("the ISO would be over 2^32 sectors")]
    TooLarge,
    #[error("{0} directories; an ISO 9660 path table numbers at most 65535")]
    TooManyDirectories(usize),
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

/// The 7-byte recording date of `secs`, UTC.
fn record_date(secs: u64) -> Option<[u8; 7]> {
    let t = chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, 0)?;
    use chrono::{Datelike, Timelike};
    let year = u8::try_from(t.year().checked_sub(1900)?).ok()?;
    Some([
        year,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        0,
    ])
}

/// The 17-byte volume date of `secs`, UTC.
fn volume_date(secs: u64) -> [u8; 17] {
    let mut d = [b'0'; 17];
    d[16] = 0;
    if let Some(t) = i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
    {
        let text = t.format("%Y%m%d%H%M%S00").to_string();
        d[..16].copy_from_slice(&text.as_bytes()[..16]);
    }
    d
}

fn entry(sig: &[u8; 2], body: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(4 + body.len());
    e.extend_from_slice(sig);
    e.push((4 + body.len()) as u8);
    e.push(1);
    e.extend_from_slice(body);
    e
}

fn px(mode: u32, nlink: u32, meta: Meta) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    for v in [mode, nlink, meta.uid, meta.gid] {
        b.extend(both32(v));
    }
    entry(b"PX", &b)
}

fn tf(date: [u8; 7]) -> Vec<u8> {
    // Modify, access and attribute change, in that order.
    let mut b = vec![0x0e];
    for _ in 0..3 {
        b.extend(date);
    }
    entry(b"TF", &b)
}

/// NM entries for `name`, split into continued pieces.
fn nm(name: &str) -> Vec<Vec<u8>> {
    let bytes = name.as_bytes();
    let chunks: Vec<&[u8]> = bytes.chunks(250).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut b = vec![u8::from(i + 1 < chunks.len())];
            b.extend_from_slice(c);
            entry(b"NM", &b)
        })
        .collect()
}

/// SL entries for `target`: its components, split so that no entry passes
/// 255 bytes; every entry but the last is flagged as continued.
fn sl(target: &str) -> Vec<Vec<u8>> {
    let mut components: Vec<Vec<u8>> = Vec::new();
    if target.starts_with('/') {
        components.push(vec![0x08, 0]);
    }
    for part in target.split('/').filter(|p| !p.is_empty()) {
        match part {
            "." => components.push(vec![0x02, 0]),
            ".." => components.push(vec![0x04, 0]),
            _ => {
                let pieces: Vec<&[u8]> = part.as_bytes().chunks(248).collect();
                for (i, piece) in pieces.iter().enumerate() {
                    let mut c = vec![u8::from(i + 1 < pieces.len()), piece.len() as u8];
                    c.extend_from_slice(piece);
                    components.push(c);
                }
            }
        }
    }
    let mut bodies: Vec<Vec<u8>> = vec![vec![0]];
    for c in components {
        if bodies.last().is_some_and(|b| b.len() + c.len() > 251) {
            bodies.push(vec![0]);
        }
        bodies.last_mut().expect("one body at least").extend(c);
    }
    let n = bodies.len();
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, mut b)| {
            b[0] = u8::from(i + 1 < n);
            entry(b"SL", &b)
        })
        .collect()
}

/// PN's halves: the two 32-bit words of glibc's 64-bit `dev_t`, as
/// genisoimage writes them. Linux reads a high word of 0 with a low word
/// above 255 as `major << 8 | minor`; libisofs as the `dev_t`.
fn pn(major: u32, minor: u32) -> (u32, u32) {
    let (major, minor) = (u64::from(major), u64::from(minor));
    let dev = ((major & 0xfff) << 8)
        | ((major & !0xfff) << 32)
        | (minor & 0xff)
        | ((minor & !0xff) << 12);
    ((dev >> 32) as u32, dev as u32)
}

fn ce(sector: u32, offset: u32, len: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(24);
    b.extend(both32(sector));
    b.extend(both32(offset));
    b.extend(both32(len));
    entry(b"CE", &b)
}

/// A record's System Use: what fits in the record, then a chain of
/// continuation areas.
#[derive(Default)]
struct SystemUse {
    inline: Vec<Vec<u8>>,
    areas: Vec<Vec<Vec<u8>>>,
}

impl SystemUse {
    /// Splits `entries` for a record whose fixed part is `base` bytes.
    fn fit(base: usize, entries: Vec<Vec<u8>>) -> SystemUse {
        let room = MAX_RECORD - base;
        let total: usize = entries.iter().map(Vec::len).sum();
        if total <= room {
            return SystemUse {
                inline: entries,
                areas: Vec::new(),
            };
        }
        let mut su = SystemUse::default();
        let mut used = 0;
        let mut rest = entries.into_iter().peekable();
        while let Some(e) = rest.next_if(|e| used + e.len() + CE_LEN <= room) {
            used += e.len();
            su.inline.push(e);
        }
        su.areas = SystemUse::chain(rest.collect());
        su
    }

    fn chain(entries: Vec<Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
        let mut areas: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
        let mut used = 0;
        for e in entries {
            if used + e.len() + CE_LEN > SECTOR {
                areas.push(Vec::new());
                used = 0;
            }
            used += e.len();
            areas.last_mut().expect("one area at least").push(e);
        }
        areas
    }

    fn inline_len(&self) -> usize {
        self.inline.iter().map(Vec::len).sum::<usize>()
            + if self.areas.is_empty() { 0 } else { CE_LEN }
    }

    fn area_len(&self, i: usize) -> usize {
        self.areas[i].iter().map(Vec::len).sum::<usize>()
            + if i + 1 < self.areas.len() { CE_LEN } else { 0 }
    }
}

/// One node of the tree, by index; 0 is the root.
struct INode<'t> {
    path: &'t str,
    name: &'t str,
    node: &'t Node,
    meta: Meta,
    children: Vec<usize>,
    parent: usize,
}

/// One directory record's target and identifier in a view.
struct Rec {
    id: Vec<u8>,
    node: usize,
}

/// The directories of one tree (primary or Joliet), breadth first.
struct View {
    dirs: Vec<usize>,
    /// Sorted records of each directory, by node index.
    records: HashMap<usize, Vec<Rec>>,
    /// First sector and sector count of each directory.
    place: HashMap<usize, (u32, u32)>,
    /// System Use of each directory's records: `.`, `..`, then children.
    su: HashMap<usize, Vec<SystemUse>>,
}

fn record_base(id_len: usize) -> usize {
    33 + id_len + (id_len + 1) % 2
}

fn primary_id(name: &str, dir: bool, taken: &mut HashSet<Vec<u8>>) -> Vec<u8> {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| match c.to_ascii_uppercase() {
                u @ ('A'..='Z' | '0'..='9' | '_') => u,
                _ => '_',
            })
            .collect()
    };
    let (base, ext) = match name.rsplit_once('.') {
        Some((b, e)) if !dir && !b.is_empty() => (clean(b), clean(e)),
        _ => (clean(name), String::new()),
    };
    let ext: String = ext.chars().take(PRIMARY_NAME - 2).collect();
    let room = PRIMARY_NAME - if dir { 0 } else { ext.len() + 1 };
    let spell = |base: &str| {
        if dir {
            base.as_bytes().to_vec()
        } else {
            format!("{base}.{ext};1").into_bytes()
        }
    };
    let mut n = 0u32;
    loop {
        let candidate = if n == 0 {
            base.chars().take(room).collect::<String>()
        } else {
            let suffix = format!("~{n}");
            let keep = room.saturating_sub(suffix.len());
            format!("{}{suffix}", base.chars().take(keep).collect::<String>())
        };
        let id = spell(&candidate);
        if taken.insert(id.clone()) {
            return id;
        }
        n += 1;
    }
}

fn joliet_id(name: &str, dir: bool, taken: &mut HashSet<Vec<u8>>) -> Vec<u8> {
    let units: Vec<u16> = name
        .chars()
        .map(|c| match c {
            '*' | '/' | ':' | ';' | '?' | '\\' => '_' as u16,
            c if (c as u32) < 0x20 || (c as u32) > 0xffff => '_' as u16,
            c => c as u16,
        })
        .collect();
    let spell = |units: &[u16]| {
        let mut id: Vec<u8> = units.iter().flat_map(|u| u.to_be_bytes()).collect();
        if !dir {
            id.extend([0, b';', 0, b'1']);
        }
        id
    };
    let mut n = 0u32;
    loop {
        let candidate: Vec<u16> = if n == 0 {
            units.iter().copied().take(JOLIET_NAME).collect()
        } else {
            let suffix: Vec<u16> = format!("~{n}").encode_utf16().collect();
            let keep = JOLIET_NAME.saturating_sub(suffix.len());
            units.iter().copied().take(keep).chain(suffix).collect()
        };
        let id = spell(&candidate);
        if taken.insert(id.clone()) {
            return id;
        }
        n += 1;
    }
}

fn type_bits(node: &Node) -> u32 {
    match node {
        Node::File { .. } => 0o100000,
        Node::Dir => 0o040000,
        Node::Symlink(_) => 0o120000,
        Node::Char { .. } => 0o020000,
        Node::Block { .. } => 0o060000,
        Node::Fifo => 0o010000,
    }
}

struct Layout<'t> {
    nodes: Vec<INode<'t>>,
    /// Link counts of files by spool offset (hard links share it).
    links: HashMap<u64, u32>,
    dates: Vec<[u8; 7]>,
}

impl<'t> Layout<'t> {
    fn new(tree: &'t Spooled) -> Result<Layout<'t>, IsoFsError> {
        static ROOT: Node = Node::Dir;
        let mut nodes = vec![INode {
            path: "",
            name: "",
            node: &ROOT,
            meta: tree.dir_meta,
            children: Vec::new(),
            parent: 0,
        }];
        let mut index: HashMap<&str, usize> = HashMap::from([("", 0)]);
        let mut links: HashMap<u64, u32> = HashMap::new();
        for (path, item) in &tree.items {
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
            let parent = index[parent];
            if let Node::File { offset, len } = item.node {
                if len > u64::from(u32::MAX) {
                    return Err(IsoFsError::FileTooLarge {
                        path: path.clone(),
                        len,
                    });
                }
                if len > 0 {
                    *links.entry(offset).or_default() += 1;
                }
            }
            let i = nodes.len();
            nodes.push(INode {
                path,
                name,
                node: &item.node,
                meta: item.meta,
                children: Vec::new(),
                parent,
            });
            nodes[parent].children.push(i);
            index.insert(path, i);
        }
        let dates = nodes
            .iter()
            .map(|n| {
                record_date(n.meta.mtime).ok_or_else(|| IsoFsError::Date {
                    path: n.path.to_owned(),
                    mtime: n.meta.mtime,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Layout {
            nodes,
            links,
            dates,
        })
    }

    fn nlink(&self, i: usize) -> u32 {
        let n = &self.nodes[i];
        match n.node {
            Node::Dir => {
                let subdirs = n
                    .children
                    .iter()
                    .filter(|&&c| *self.nodes[c].node == Node::Dir)
                    .count();
                2 + subdirs as u32
            }
            Node::File { offset, len } if *len > 0 => self.links[offset],
            _ => 1,
        }
    }

    fn px(&self, i: usize) -> Vec<u8> {
        let n = &self.nodes[i];
        px(type_bits(n.node) | n.meta.mode, self.nlink(i), n.meta)
    }

    /// Rock Ridge entries of a child's record.
    fn rock_ridge(&self, i: usize) -> Vec<Vec<u8>> {
        let n = &self.nodes[i];
        let mut e = vec![self.px(i), tf(self.dates[i])];
        e.extend(nm(n.name));
        match n.node {
            Node::Symlink(target) => e.extend(sl(target)),
            Node::Char { major, minor } | Node::Block { major, minor } => {
                let mut b = Vec::new();
                let (high, low) = pn(*major, *minor);
                b.extend(both32(high));
                b.extend(both32(low));
                e.push(entry(b"PN", &b));
            }
            _ => {}
        }
        e
    }

    fn view(&self, joliet: bool) -> View {
        let mut view = View {
            dirs: Vec::new(),
            records: HashMap::new(),
            place: HashMap::new(),
            su: HashMap::new(),
        };
        let mut queue = VecDeque::from([0usize]);
        while let Some(d) = queue.pop_front() {
            view.dirs.push(d);
            let mut taken = HashSet::new();
            let mut recs: Vec<Rec> = self.nodes[d]
                .children
                .iter()
                .map(|&c| {
                    let dir = *self.nodes[c].node == Node::Dir;
                    let name = self.nodes[c].name;
                    let id = if joliet {
                        joliet_id(name, dir, &mut taken)
                    } else {
                        primary_id(name, dir, &mut taken)
                    };
                    Rec { id, node: c }
                })
                .collect();
            recs.sort_by(|a, b| a.id.cmp(&b.id));
            for r in &recs {
                if *self.nodes[r.node].node == Node::Dir {
                    queue.push_back(r.node);
                }
            }
            if !joliet {
                let parent = self.nodes[d].parent;
                let mut dot = vec![self.px(d), tf(self.dates[d])];
                let mut areas = Vec::new();
                if d == 0 {
                    dot.insert(0, entry(b"SP", &[0xbe, 0xef, 0]));
                    let mut er = vec![ER_ID.len() as u8, ER_DESCRIPTOR.len() as u8];
                    er.push(ER_SOURCE.len() as u8);
                    er.push(1);
                    er.extend_from_slice(ER_ID.as_bytes());
                    er.extend_from_slice(ER_DESCRIPTOR.as_bytes());
                    er.extend_from_slice(ER_SOURCE.as_bytes());
                    areas.push(vec![entry(b"ER", &er)]);
                }
                let mut su = vec![
                    SystemUse { inline: dot, areas },
                    SystemUse::fit(
                        record_base(1),
                        vec![self.px(parent), tf(self.dates[parent])],
                    ),
                ];
                for r in &recs {
                    su.push(SystemUse::fit(
                        record_base(r.id.len()),
                        self.rock_ridge(r.node),
                    ));
                }
                view.su.insert(d, su);
            }
            view.records.insert(d, recs);
        }
        view
    }
}

/// Bytes of each record of `d` (`.`, `..`, children), before placement.
fn record_lens(view: &View, d: usize) -> Vec<usize> {
    let su = view.su.get(&d);
    let su_len = |k: usize| su.map_or(0, |s| s[k].inline_len());
    let mut lens = vec![record_base(1) + su_len(0), record_base(1) + su_len(1)];
    for (k, r) in view.records[&d].iter().enumerate() {
        let n = record_base(r.id.len()) + su_len(k + 2);
        lens.push(n + n % 2);
    }
    lens.iter().map(|n| n + n % 2).collect()
}

fn dir_sectors(lens: &[usize]) -> u32 {
    let mut sectors = 1;
    let mut used = 0;
    for &n in lens {
        if used + n > SECTOR {
            sectors += 1;
            used = 0;
        }
        used += n;
    }
    sectors
}

struct Record<'a> {
    id: &'a [u8],
    extent: u32,
    len: u32,
    date: [u8; 7],
    dir: bool,
    su: Vec<u8>,
}

fn record(r: &Record<'_>) -> Vec<u8> {
    let base = record_base(r.id.len());
    let mut b = vec![0u8; base];
    b[2..10].copy_from_slice(&both32(r.extent));
    b[10..18].copy_from_slice(&both32(r.len));
    b[18..25].copy_from_slice(&r.date);
    b[25] = if r.dir { 2 } else { 0 };
    b[28..32].copy_from_slice(&both16(1));
    b[32] = r.id.len() as u8;
    b[33..33 + r.id.len()].copy_from_slice(r.id);
    b.extend_from_slice(&r.su);
    if b.len() % 2 == 1 {
        b.push(0);
    }
    b[0] = b.len() as u8;
    b
}

/// A text field: `text` in d/a-characters (or UCS-2 for Joliet), padded.
fn text(value: &str, len: usize, joliet: bool) -> Vec<u8> {
    let mut v: Vec<u8> = if joliet {
        value.encode_utf16().flat_map(u16::to_be_bytes).collect()
    } else {
        value.as_bytes().to_vec()
    };
    v.truncate(len);
    while v.len() < len {
        v.extend(if joliet && len - v.len() >= 2 {
            &[0u8, b' '][..]
        } else {
            &[b' '][..]
        });
    }
    v
}

/// The path table of `view`, little- or big-endian.
fn path_table(view: &View, layout: &Layout<'_>, le: bool) -> Vec<u8> {
    let number: HashMap<usize, u16> = view
        .dirs
        .iter()
        .enumerate()
        .map(|(n, &d)| (d, n as u16 + 1))
        .collect();
    let mut t = Vec::new();
    for &d in &view.dirs {
        let parent = layout.nodes[d].parent;
        let id: Vec<u8> = if d == 0 {
            vec![0]
        } else {
            view.records[&parent]
                .iter()
                .find(|r| r.node == d)
                .map(|r| r.id.clone())
                .expect("a directory is listed in its parent")
        };
        t.push(id.len() as u8);
        t.push(0);
        // Zero while the tables are only being measured.
        let extent = view.place.get(&d).map_or(0, |p| p.0);
        t.extend(if le {
            extent.to_le_bytes()
        } else {
            extent.to_be_bytes()
        });
        let p = number[&parent];
        t.extend(if le { p.to_le_bytes() } else { p.to_be_bytes() });
        t.extend(&id);
        if id.len() % 2 == 1 {
            t.push(0);
        }
    }
    t
}

/// Writes the ISO of `tree` to `out`; returns `out` and the bytes written.
pub fn write<W: Write>(
    tree: &Spooled,
    volume_id: &str,
    mut out: W,
) -> Result<(W, u64), IsoFsError> {
    let layout = Layout::new(tree)?;
    let dirs = layout.nodes.iter().filter(|n| *n.node == Node::Dir).count();
    if dirs > usize::from(u16::MAX) {
        return Err(IsoFsError::TooManyDirectories(dirs));
    }
    let mut primary = layout.view(false);
    let mut joliet = layout.view(true);

    let too_large = |n: u64| u32::try_from(n).map_err(|_| IsoFsError::TooLarge);
    // 16 system sectors, then PVD, SVD and terminator.
    let mut next: u64 = 19;
    let mut tables = [0u64; 4];
    let p_table_len = path_table(&primary, &layout, true).len();
    let j_table_len = path_table(&joliet, &layout, true).len();
    for (k, len) in [p_table_len, p_table_len, j_table_len, j_table_len]
        .into_iter()
        .enumerate()
    {
        tables[k] = next;
        next += len.div_ceil(SECTOR) as u64;
    }
    for view in [&mut primary, &mut joliet] {
        for &d in &view.dirs.clone() {
            let sectors = dir_sectors(&record_lens(view, d));
            view.place.insert(d, (too_large(next)?, sectors));
            next += u64::from(sectors);
        }
    }
    // Continuation areas, none crossing a sector.
    let mut areas: BTreeMap<(usize, usize, usize), (u32, u32)> = BTreeMap::new();
    let mut area_bytes: Vec<(u64, Vec<u8>)> = Vec::new();
    let (mut sector, mut used) = (next, 0usize);
    let mut any = false;
    for &d in &primary.dirs {
        for (k, su) in primary.su[&d].iter().enumerate() {
            for a in 0..su.areas.len() {
                let len = su.area_len(a);
                if used + len > SECTOR {
                    sector += 1;
                    used = 0;
                }
                areas.insert((d, k, a), (too_large(sector)?, used as u32));
                area_bytes.push((sector * SECTOR as u64 + used as u64, Vec::new()));
                used += len;
                any = true;
            }
        }
    }
    if any {
        next = sector + 1;
    }
    // File extents, in directory order; hard links share one.
    let mut extents: HashMap<u64, u32> = HashMap::new();
    let mut data_order: Vec<(u64, u64, u32)> = Vec::new();
    for &d in &primary.dirs {
        for r in &primary.records[&d] {
            if let Node::File { offset, len } = *layout.nodes[r.node].node {
                if len > 0 && !extents.contains_key(&offset) {
                    let at = too_large(next)?;
                    extents.insert(offset, at);
                    data_order.push((offset, len, at));
                    next += len.div_ceil(SECTOR as u64);
                }
            }
        }
    }
    let total = too_large(next)?;

    let extent_of = |i: usize| -> (u32, u32, bool) {
        match *layout.nodes[i].node {
            Node::File { offset, len } if len > 0 => (extents[&offset], len as u32, false),
            Node::Dir => {
                let (s, n) = primary.place[&i];
                (s, n * SECTOR as u32, true)
            }
            _ => (0, 0, false),
        }
    };
    let joliet_dir = |i: usize| {
        let (s, n) = joliet.place[&i];
        (s, n * SECTOR as u32, true)
    };

    let meta_len = data_order
        .first()
        .map_or(u64::from(total), |&(_, _, at)| u64::from(at));
    let mut meta = vec![0u8; meta_len as usize * SECTOR];
    let mut area_index = 0;
    for (is_joliet, view) in [(false, &primary), (true, &joliet)] {
        for &d in &view.dirs {
            let parent = layout.nodes[d].parent;
            let place = |i: usize| {
                if is_joliet && *layout.nodes[i].node == Node::Dir {
                    joliet_dir(i)
                } else {
                    extent_of(i)
                }
            };
            let mut targets: Vec<(&[u8], usize)> = vec![(&[0][..], d), (&[1][..], parent)];
            for r in &view.records[&d] {
                targets.push((&r.id, r.node));
            }
            let mut bytes = Vec::new();
            for (k, (id, i)) in targets.into_iter().enumerate() {
                let mut su = Vec::new();
                if let Some(s) = view.su.get(&d).map(|s| &s[k]) {
                    for e in &s.inline {
                        su.extend(e);
                    }
                    if !s.areas.is_empty() {
                        let (sec, off) = areas[&(d, k, 0)];
                        su.extend(ce(sec, off, s.area_len(0) as u32));
                    }
                    for a in 0..s.areas.len() {
                        let mut area = Vec::new();
                        for e in &s.areas[a] {
                            area.extend(e);
                        }
                        if a + 1 < s.areas.len() {
                            let (sec, off) = areas[&(d, k, a + 1)];
                            area.extend(ce(sec, off, s.area_len(a + 1) as u32));
                        }
                        area_bytes[area_index].1 = area;
                        area_index += 1;
                    }
                }
                let (extent, len, dir) = place(i);
                let r = record(&Record {
                    id,
                    extent,
                    len,
                    date: layout.dates[i],
                    dir,
                    su,
                });
                let room = SECTOR - bytes.len() % SECTOR;
                if r.len() > room {
                    bytes.resize(bytes.len() + room, 0);
                }
                bytes.extend(r);
            }
            let at = view.place[&d].0 as usize * SECTOR;
            meta[at..at + bytes.len()].copy_from_slice(&bytes);
        }
    }
    for (at, bytes) in &area_bytes {
        let at = *at as usize;
        meta[at..at + bytes.len()].copy_from_slice(bytes);
    }
    for (k, (view, le)) in [
        (&primary, true),
        (&primary, false),
        (&joliet, true),
        (&joliet, false),
    ]
    .into_iter()
    .enumerate()
    {
        let t = path_table(view, &layout, le);
        let at = tables[k] as usize * SECTOR;
        meta[at..at + t.len()].copy_from_slice(&t);
    }
    for (at, is_joliet) in [(16usize, false), (17, true)] {
        let (view, l, m, table_len) = if is_joliet {
            (&joliet, tables[2], tables[3], j_table_len)
        } else {
            (&primary, tables[0], tables[1], p_table_len)
        };
        let mut vd = vec![0u8; SECTOR];
        vd[0] = if is_joliet { 2 } else { 1 };
        vd[1..6].copy_from_slice(b"CD001");
        vd[6] = 1;
        vd[8..40].copy_from_slice(&text("", 32, is_joliet));
        vd[40..72].copy_from_slice(&text(volume_id, 32, is_joliet));
        vd[80..88].copy_from_slice(&both32(total));
        if is_joliet {
            vd[88..91].copy_from_slice(b"%/E");
        }
        vd[120..124].copy_from_slice(&both16(1));
        vd[124..128].copy_from_slice(&both16(1));
        vd[128..132].copy_from_slice(&both16(SECTOR as u16));
        vd[132..140].copy_from_slice(&both32(table_len as u32));
        vd[140..144].copy_from_slice(&(l as u32).to_le_bytes());
        vd[148..152].copy_from_slice(&(m as u32).to_be_bytes());
        let (root_at, root_sectors) = view.place[&0];
        vd[156..190].copy_from_slice(&record(&Record {
            id: &[0],
            extent: root_at,
            len: root_sectors * SECTOR as u32,
            date: layout.dates[0],
            dir: true,
            su: Vec::new(),
        }));
        vd[190..318].copy_from_slice(&text("", 128, is_joliet));
        vd[318..446].copy_from_slice(&text("", 128, is_joliet));
        vd[446..574].copy_from_slice(&text("", 128, is_joliet));
        vd[574..702].copy_from_slice(&text("KILN", 128, is_joliet));
        vd[702..813].copy_from_slice(&text("", 111, is_joliet));
        let created = volume_date(LINUXKIT_EPOCH);
        vd[813..830].copy_from_slice(&created);
        vd[830..847].copy_from_slice(&created);
        for at in [847, 864] {
            vd[at..at + 16].fill(b'0');
        }
        vd[881] = 1;
        meta[at * SECTOR..(at + 1) * SECTOR].copy_from_slice(&vd);
    }
    let term = &mut meta[18 * SECTOR..18 * SECTOR + 7];
    term[0] = 255;
    term[1..6].copy_from_slice(b"CD001");
    term[6] = 1;

    out.write_all(&meta)?;
    let mut written = meta.len() as u64;
    let zeros = [0u8; SECTOR];
    for (offset, len, at) in data_order {
        debug_assert_eq!(written, u64::from(at) * SECTOR as u64);
        let copied = io::copy(&mut tree.reader(offset, len), &mut out)?;
        let pad = (SECTOR as u64 - copied % SECTOR as u64) % SECTOR as u64;
        out.write_all(&zeros[..pad as usize])?;
        written += copied + pad;
    }
    Ok((out, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_names_are_unique_d_characters() {
        let mut taken = HashSet::new();
        assert_eq!(primary_id("initrd.img", false, &mut taken), b"INITRD.IMG;1");
        assert_eq!(
            primary_id("Initrd.img", false, &mut taken),
            b"INITRD~1.IMG;1"
        );
        assert_eq!(
            primary_id("lib-x86.so.6", false, &mut taken),
            b"LIB_X86_SO.6;1"
        );
        assert_eq!(primary_id(".profile", false, &mut taken), b"_PROFILE.;1");
        let long = primary_id(&"d".repeat(40), true, &mut taken);
        assert_eq!(long.len(), PRIMARY_NAME);
        let again = primary_id(&"d".repeat(41), true, &mut taken);
        assert_eq!(&again[PRIMARY_NAME - 2..], b"~1");
    }

    #[test]
    fn joliet_names_are_ucs2_with_versions() {
        let mut taken = HashSet::new();
        assert_eq!(
            joliet_id("a:b", false, &mut taken),
            [0, b'a', 0, b'_', 0, b'b', 0, b';', 0, b'1']
        );
        assert_eq!(joliet_id("x", true, &mut taken), [0, b'x']);
        let long = joliet_id(&"é".repeat(200), true, &mut taken);
        assert_eq!(long.len(), 2 * JOLIET_NAME);
    }

    #[test]
    fn symlinks_split_into_components_and_entries() {
        let one = sl("/usr/../bin/./sh");
        assert_eq!(one.len(), 1);
        assert_eq!(
            &one[0][5..],
            [
                0x08, 0, 0, 3, b'u', b's', b'r', 0x04, 0, 0, 3, b'b', b'i', b'n', 0x02, 0, 0, 2,
                b's', b'h'
            ]
        );
        let long = format!("{}/{}", "a".repeat(300), "b".repeat(300));
        let entries = sl(&long);
        assert!(entries.iter().all(|e| e.len() <= MAX_RECORD));
        assert!(entries.len() >= 3);
        assert!(entries[..entries.len() - 1].iter().all(|e| e[4] == 1));
        assert_eq!(entries.last().unwrap()[4], 0);
    }

    #[test]
    fn system_use_overflows_into_chained_areas() {
        let entries: Vec<Vec<u8>> = (0..20).map(|_| entry(b"NM", &[0u8; 200])).collect();
        let su = SystemUse::fit(record_base(12), entries);
        assert!(su.inline_len() <= MAX_RECORD - record_base(12));
        assert!(su.areas.len() >= 2);
        for a in 0..su.areas.len() {
            assert!(su.area_len(a) <= SECTOR);
        }
    }

    #[test]
    fn device_numbers_split_as_glibc_dev_t() {
        assert_eq!(pn(1, 3), (0, 0x103));
        assert_eq!(pn(259, 0x12345), (0, 0x1231_0345));
        assert_eq!(pn(0x1000, 0), (0x1000, 0));
    }

    #[test]
    fn dates_are_utc_and_bounded() {
        assert_eq!(
            record_date(LINUXKIT_EPOCH),
            Some([117, 4, 18, 16, 30, 0, 0])
        );
        assert_eq!(&volume_date(LINUXKIT_EPOCH)[..16], b"2017041816300000");
        assert_eq!(record_date(u64::MAX), None);
    }
}
