//! Little-endian encoding for everything pcore writes to disk, and a bounds-checked reader
//! whose failures name the file and offset.

use crate::error::{Error, Result};

pub(crate) fn crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

#[derive(Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// LEB128: seven bits a byte, low first.
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }
}

/// Reads fields in order; any read past the end is `Corrupt` at the reader's file and offset.
pub(crate) struct Reader<'a> {
    file: &'a str,
    base: u64,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// `base` is the file offset of `data[0]`, for messages.
    pub fn new(file: &'a str, base: u64, data: &'a [u8]) -> Reader<'a> {
        Reader { file, base, data, pos: 0 }
    }

    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn corrupt(&self, what: impl Into<String>) -> Error {
        Error::corrupt(self.file, self.offset(), what)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(self.corrupt(format!("record ends early: {n} bytes wanted, {} left", self.remaining())));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_short_reads_are_corrupt() {
        let mut w = Writer::default();
        w.u8(1);
        w.u16(2);
        w.u32(3);
        w.u64(4);
        w.bytes(b"xy");
        let mut r = Reader::new("f", 100, &w.buf);
        assert_eq!((r.u8().unwrap(), r.u16().unwrap(), r.u32().unwrap(), r.u64().unwrap()), (1, 2, 3, 4));
        assert_eq!(r.take(2).unwrap(), b"xy");
        match r.u8() {
            Err(Error::Corrupt { file, offset, .. }) => {
                assert_eq!((file.as_str(), offset), ("f", 117))
            }
            other => panic!("{other:?}"),
        }
    }
}
