//! Stopping a build while it writes: a shared flag the writer looks at
//! before every entry and every read of an entry's data, so a cancelled
//! build stops within one read buffer rather than at the end of the format.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::engine::fs::{Entry, Sink};

/// A cancellation flag; the default never fires.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Option<Arc<AtomicBool>>);

impl Cancel {
    /// Fires once `flag` is set.
    pub fn from_flag(flag: Arc<AtomicBool>) -> Cancel {
        Cancel(Some(flag))
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
    }

    fn check(&self) -> io::Result<()> {
        if self.is_cancelled() {
            Err(io::Error::other("the build was cancelled"))
        } else {
            Ok(())
        }
    }
}

/// A sink that refuses entries, and stops reading their data, once the
/// build is cancelled.
pub struct CancelSink<'a> {
    inner: &'a mut dyn Sink,
    cancel: &'a Cancel,
}

impl<'a> CancelSink<'a> {
    pub fn new(inner: &'a mut dyn Sink, cancel: &'a Cancel) -> Self {
        CancelSink { inner, cancel }
    }
}

struct CancelRead<'a> {
    inner: &'a mut dyn Read,
    cancel: &'a Cancel,
}

impl Read for CancelRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.cancel.check()?;
        self.inner.read(buf)
    }
}

impl Sink for CancelSink<'_> {
    fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        self.cancel.check()?;
        let mut guarded = CancelRead {
            inner: data,
            cancel: self.cancel,
        };
        self.inner.add(entry, &mut guarded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fs::{Kind, LINUXKIT_EPOCH};

    /// Records entries and bytes read; sets `flag` after `after` bytes.
    struct Recorder {
        entries: usize,
        bytes: usize,
        after: usize,
        flag: Arc<AtomicBool>,
    }

    impl Sink for Recorder {
        fn add(&mut self, _: &Entry, data: &mut dyn Read) -> io::Result<()> {
            self.entries += 1;
            let mut buf = [0u8; 4096];
            loop {
                let n = data.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                self.bytes += n;
                if self.bytes >= self.after {
                    self.flag.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    #[test]
    fn a_cancel_stops_within_one_read_and_refuses_later_entries() {
        let flag = Arc::new(AtomicBool::new(false));
        let cancel = Cancel::from_flag(flag.clone());
        let mut rec = Recorder {
            entries: 0,
            bytes: 0,
            after: 8192,
            flag: flag.clone(),
        };
        let data = vec![7u8; 1 << 20];
        let mut e = Entry::new("big", Kind::File, 0o644, LINUXKIT_EPOCH);
        e.size = data.len() as u64;
        let mut sink = CancelSink::new(&mut rec, &cancel);
        let err = sink.add(&e, &mut &data[..]).unwrap_err();
        assert_eq!(err.to_string(), "the build was cancelled");
        assert!(sink.add(&e, &mut &data[..]).is_err());
        assert_eq!(rec.entries, 1);
        assert_eq!(rec.bytes, 8192);
        assert!(!Cancel::default().is_cancelled());
    }
}
