//! Bounded little-endian reads over the mapped file, built from nom's byte parsers. Every read
//! states how many bytes it needs; a short read reports where, and the caller names what was
//! being read.

use nom::number::complete as num;
use nom::Parser;

use super::error::GgufError;

/// A read that ran past the end of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Short {
    pub offset: u64,
    pub needed: u64,
    pub available: u64,
}

impl Short {
    /// The typed error, naming what was being read.
    pub fn context(self, what: impl Into<String>) -> GgufError {
        GgufError::Truncated {
            what: what.into(),
            offset: self.offset,
            needed: self.needed,
            available: self.available,
        }
    }
}

type NomErr<'a> = nom::error::Error<&'a [u8]>;

/// A position in a byte slice.
pub(super) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

macro_rules! readers {
    ($($name:ident: $ty:ty = $parser:ident, $size:literal;)*) => {
        $(
            pub fn $name(&mut self) -> Result<$ty, Short> {
                let (rest, v) = num::$parser::<&[u8], NomErr<'a>>(self.rest()).map_err(|_| self.short($size))?;
                self.pos = self.data.len() - rest.len();
                Ok(v)
            }
        )*
    };
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Cursor<'a> {
        Cursor { data, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn pos(&self) -> u64 {
        self.pos as u64
    }

    /// Bytes left.
    pub fn remaining(&self) -> u64 {
        (self.data.len() - self.pos) as u64
    }

    fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    fn short(&self, needed: u64) -> Short {
        Short {
            offset: self.pos(),
            needed,
            available: self.remaining(),
        }
    }

    readers! {
        u8: u8 = le_u8, 1;
        i8: i8 = le_i8, 1;
        u16: u16 = le_u16, 2;
        i16: i16 = le_i16, 2;
        u32: u32 = le_u32, 4;
        i32: i32 = le_i32, 4;
        u64: u64 = le_u64, 8;
        i64: i64 = le_i64, 8;
        f32: f32 = le_f32, 4;
        f64: f64 = le_f64, 8;
    }

    /// The next `n` bytes, borrowed.
    pub fn bytes(&mut self, n: u64) -> Result<&'a [u8], Short> {
        let Ok(len) = usize::try_from(n) else {
            return Err(self.short(n));
        };
        let (rest, taken) = nom::bytes::complete::take::<usize, &[u8], NomErr<'a>>(len)
            .parse(self.rest())
            .map_err(|_| self.short(n))?;
        self.pos = self.data.len() - rest.len();
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_reports_short_reads() {
        let mut c = Cursor::new(&[1, 0, 0, 0, 2, 0]);
        assert_eq!(c.u32(), Ok(1));
        assert_eq!(
            c.u32(),
            Err(Short {
                offset: 4,
                needed: 4,
                available: 2
            })
        );
        assert_eq!(c.pos(), 4);
        assert_eq!(c.u16(), Ok(2));
        assert_eq!(
            c.bytes(1),
            Err(Short {
                offset: 6,
                needed: 1,
                available: 0
            })
        );
        assert_eq!(c.bytes(u64::MAX).unwrap_err().needed, u64::MAX);
    }
}
