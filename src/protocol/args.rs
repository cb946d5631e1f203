//! A parsed request's arguments as ranges into the bytes the client sent.
//!
//! The session frames a request once ([`super::scan`]) and records where each argument
//! lies; everything downstream (command lookup, key extraction, local commands) reads the
//! arguments through [`Args`] without copying them out of the read buffer.

use std::ops::Range;

/// A request's arguments: borrowed request bytes plus the range of each argument.
#[derive(Clone, Copy)]
pub struct Args<'a> {
    buf: &'a [u8],
    ranges: &'a [Range<u32>],
}

impl<'a> Args<'a> {
    /// `ranges` index into `buf`; the session guarantees they are in bounds.
    pub fn new(buf: &'a [u8], ranges: &'a [Range<u32>]) -> Self {
        Args { buf, ranges }
    }

    /// The whole request as the client sent it (as framed by the session).
    pub fn raw(&self) -> &'a [u8] {
        self.buf
    }

    /// Number of arguments, the command name included.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i` (0 is the command name). Panics when `i >= len()`.
    pub fn get(&self, i: usize) -> &'a [u8] {
        let r = &self.ranges[i];
        &self.buf[r.start as usize..r.end as usize]
    }

    /// Argument `i`, or `None` past the end.
    pub fn try_get(&self, i: usize) -> Option<&'a [u8]> {
        (i < self.len()).then(|| self.get(i))
    }

    /// Iterates over all arguments in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let buf = self.buf;
        self.ranges
            .iter()
            .map(move |r| &buf[r.start as usize..r.end as usize])
    }
}

/// Builds owned argument storage for tests and for requests respgate composes itself.
pub struct OwnedArgs {
    buf: Vec<u8>,
    ranges: Vec<Range<u32>>,
}

impl OwnedArgs {
    pub fn new<I, A>(args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: AsRef<[u8]>,
    {
        let mut buf = Vec::new();
        let mut ranges = Vec::new();
        for a in args {
            let start = buf.len() as u32;
            buf.extend_from_slice(a.as_ref());
            ranges.push(start..buf.len() as u32);
        }
        OwnedArgs { buf, ranges }
    }

    pub fn args(&self) -> Args<'_> {
        Args::new(&self.buf, &self.ranges)
    }
}
