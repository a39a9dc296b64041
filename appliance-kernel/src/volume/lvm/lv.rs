//! A logical volume as a block device: its byte ranges (one per segment) mapped onto PV
//! devices, linearly, striped, or mirrored over other LVs' mappings.
//!
//! Reads go to the devices in runs as large as the layout allows (a whole linear segment,
//! a whole stripe chunk); a mirrored range is read from the first leg that answers.
//! Writes go to every leg; a mapping with a leg missing (or on a read-only disk, or a
//! snapshot origin) is read-only and says why.

use crate::block::{BlockDevice, SharedDevice, check_range};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

/// An LV's layout.
#[derive(Debug)]
pub struct Mapping {
    /// `VG/LV`, for messages.
    pub name: String,
    pub size: u64,
    /// Sorted by `start`, contiguous from 0.
    pub pieces: Vec<Piece>,
    /// Why writes are refused, when they are.
    pub ro_reason: Option<String>,
}

/// One segment: `len` bytes of the LV from `start`.
#[derive(Debug)]
pub struct Piece {
    pub start: u64,
    pub len: u64,
    pub target: Target,
}

#[derive(Debug)]
pub enum Target {
    /// Areas are (device index, byte offset of the area on it); `stripe` is the chunk
    /// size in bytes (unused with a single area).
    Striped {
        stripe: u64,
        areas: Vec<(usize, u64)>,
    },
    /// Legs are (leg mapping, byte offset in the leg of this piece's start); only the legs
    /// that are available.
    Mirror { legs: Vec<(Rc<Mapping>, u64)> },
}

fn internal(msg: String) -> Error {
    Error::new(ErrorKind::Internal, msg)
}

/// A read or write buffer.
enum Buf<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Buf<'_> {
    fn len(&self) -> usize {
        match self {
            Buf::Read(b) => b.len(),
            Buf::Write(b) => b.len(),
        }
    }
    /// The sub-buffer `[from, from+len)`.
    fn sub(&mut self, from: usize, len: usize) -> Option<Buf<'_>> {
        let end = from.checked_add(len)?;
        Some(match self {
            Buf::Read(b) => Buf::Read(b.get_mut(from..end)?),
            Buf::Write(b) => Buf::Write(b.get(from..end)?),
        })
    }
}

fn dev_io(devs: &[SharedDevice], i: usize, off: u64, buf: &mut Buf<'_>) -> Result<(), Error> {
    let d = devs
        .get(i)
        .ok_or_else(|| internal(format!("lvm: device {i} out of range")))?;
    let mut d = d
        .try_borrow_mut()
        .map_err(|_| internal(String::from("lvm: PV device busy")))?;
    match buf {
        Buf::Read(b) => d.read_at(off, b),
        Buf::Write(b) => d.write_at(off, b),
    }
}

impl Mapping {
    fn piece_at(&self, off: u64) -> Result<&Piece, Error> {
        let i = self.pieces.partition_point(|p| p.start <= off);
        i.checked_sub(1)
            .and_then(|i| self.pieces.get(i))
            .filter(|p| off - p.start < p.len)
            .ok_or_else(|| internal(format!("lvm: LV {}: offset {off} unmapped", self.name)))
    }

    /// Reads or writes `buf` at `off` (the range is checked by the caller).
    fn io(&self, devs: &[SharedDevice], mut off: u64, mut buf: Buf<'_>) -> Result<(), Error> {
        let total = buf.len();
        let mut done = 0usize;
        while done < total {
            let p = self.piece_at(off)?;
            let inp = off - p.start;
            let want = (p.len - inp).min((total - done) as u64) as usize;
            let mut part = buf
                .sub(done, want)
                .ok_or_else(|| internal(String::from("lvm: buffer range")))?;
            match &p.target {
                Target::Striped { stripe, areas } => striped_io(devs, *stripe, areas, inp, part)?,
                Target::Mirror { legs } => match &mut part {
                    Buf::Read(_) => {
                        let mut last = None;
                        for (leg, base) in legs {
                            let at = base.checked_add(inp).ok_or_else(|| {
                                internal(String::from("lvm: leg offset overflows"))
                            })?;
                            match leg.io(
                                devs,
                                at,
                                part.sub(0, want)
                                    .ok_or_else(|| internal(String::from("lvm: buffer range")))?,
                            ) {
                                Ok(()) => {
                                    last = None;
                                    break;
                                }
                                Err(e) => last = Some(e),
                            }
                        }
                        if let Some(e) = last {
                            return Err(e);
                        }
                    }
                    Buf::Write(_) => {
                        for (leg, base) in legs {
                            let at = base.checked_add(inp).ok_or_else(|| {
                                internal(String::from("lvm: leg offset overflows"))
                            })?;
                            leg.io(
                                devs,
                                at,
                                part.sub(0, want)
                                    .ok_or_else(|| internal(String::from("lvm: buffer range")))?,
                            )?;
                        }
                    }
                },
            }
            done += want;
            off += want as u64;
        }
        Ok(())
    }

    /// Indices of the devices this mapping touches.
    fn devices(&self, out: &mut Vec<usize>) {
        for p in &self.pieces {
            match &p.target {
                Target::Striped { areas, .. } => out.extend(areas.iter().map(|a| a.0)),
                Target::Mirror { legs } => legs.iter().for_each(|(l, _)| l.devices(out)),
            }
        }
    }
}

/// `inp` bytes into a striped piece: chunk `c = inp / stripe` lies on area `c % n`, row
/// `c / n` of it.
fn striped_io(
    devs: &[SharedDevice],
    stripe: u64,
    areas: &[(usize, u64)],
    mut inp: u64,
    mut buf: Buf<'_>,
) -> Result<(), Error> {
    let overflow = || internal(String::from("lvm: stripe offset overflows"));
    if let [(dev, base)] = areas {
        let at = base.checked_add(inp).ok_or_else(overflow)?;
        return dev_io(devs, *dev, at, &mut buf);
    }
    let n = areas.len() as u64;
    if n == 0 || stripe == 0 {
        return Err(internal(String::from("lvm: striped piece without stripes")));
    }
    let total = buf.len();
    let mut done = 0usize;
    while done < total {
        let chunk = inp / stripe;
        let within = inp % stripe;
        let (dev, base) = areas
            .get((chunk % n) as usize)
            .copied()
            .ok_or_else(overflow)?;
        let at = (chunk / n)
            .checked_mul(stripe)
            .and_then(|x| x.checked_add(within))
            .and_then(|x| x.checked_add(base))
            .ok_or_else(overflow)?;
        let want = (stripe - within).min((total - done) as u64) as usize;
        let mut part = buf.sub(done, want).ok_or_else(overflow)?;
        dev_io(devs, dev, at, &mut part)?;
        done += want;
        inp += want as u64;
    }
    Ok(())
}

/// An open LV.
pub struct LvDevice {
    map: Rc<Mapping>,
    devs: Vec<SharedDevice>,
    used: Vec<usize>,
}

impl LvDevice {
    /// `devs` are the scan's PV devices, indexed as the mapping's areas are.
    pub fn new(map: Rc<Mapping>, devs: Vec<SharedDevice>) -> Self {
        let mut used = Vec::new();
        map.devices(&mut used);
        used.sort_unstable();
        used.dedup();
        LvDevice { map, devs, used }
    }

    /// Why writes are refused, if they are.
    pub fn readonly_reason(&self) -> Option<&str> {
        self.map.ro_reason.as_deref()
    }
}

impl BlockDevice for LvDevice {
    fn size(&self) -> u64 {
        self.map.size
    }
    fn readonly(&self) -> bool {
        self.map.ro_reason.is_some()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        check_range(offset, buf.len(), self.map.size)?;
        self.map.io(&self.devs, offset, Buf::Read(buf))
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        if let Some(r) = &self.map.ro_reason {
            return Err(Error::new(ErrorKind::ReadOnly, r.clone()));
        }
        check_range(offset, buf.len(), self.map.size)?;
        self.map.io(&self.devs, offset, Buf::Write(buf))
    }
    fn flush(&mut self) -> Result<(), Error> {
        let mut first = None;
        for &i in &self.used {
            if let Some(d) = self.devs.get(i)
                && let Err(e) = d.borrow_mut().flush()
            {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
