//! The framed RPC channel to the appliance over our end of the socketpair: whole frames
//! (wire::frame) in and out, every read and write bounded by a deadline. The length
//! prefix is checked before the body is allocated: the appliance is untrusted.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use wire::frame::{self, FrameError, HEADER};

/// Why a frame could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The peer closed the channel (qemu exited or closed the socket), possibly mid-frame.
    #[error("the appliance closed the channel")]
    Eof,
    /// The deadline passed.
    #[error("timed out")]
    Timeout,
    /// An oversized or undecodable frame.
    #[error("{0}")]
    Frame(FrameError),
    #[error("{0}")]
    Io(io::Error),
}

/// What the session was waiting for when its channel failed: a timeout means the
/// appliance did not boot in time, or did not answer a call in time.
#[derive(Debug, Clone, Copy)]
pub enum Waiting {
    /// The Hello, within the launch timeout.
    Launch(Duration),
    /// A reply, within the call timeout.
    Call(Duration),
}

impl Waiting {
    /// The error for the deadline having passed.
    pub fn timeout(self) -> crate::error::Error {
        match self {
            Waiting::Launch(d) => crate::error::Error::LaunchTimeout(d),
            Waiting::Call(d) => crate::error::Error::CallTimeout(d),
        }
    }
}

/// The host's end of the RPC channel.
pub struct Channel {
    pub(crate) stream: UnixStream,
}

impl Channel {
    pub fn new(stream: UnixStream) -> Channel {
        Channel { stream }
    }

    /// Sends `msg` as one frame, giving up at `deadline`.
    pub fn send<T: Serialize>(&mut self, msg: &T, deadline: Instant) -> Result<(), ChannelError> {
        let bytes = wire::encode_frame(msg).map_err(ChannelError::Frame)?;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            self.stream
                .set_write_timeout(Some(remaining(deadline)?))
                .map_err(ChannelError::Io)?;
            match self.stream.write(rest) {
                Ok(0) => return Err(ChannelError::Eof),
                Ok(n) => rest = &rest[n..],
                Err(e) => return Err(classify(e)),
            }
        }
        Ok(())
    }

    /// Receives one frame and decodes it, giving up at `deadline`.
    pub fn recv<T: DeserializeOwned>(&mut self, deadline: Instant) -> Result<T, ChannelError> {
        let mut header = [0u8; HEADER];
        self.read_full(&mut header, deadline)?;
        let len = frame::check_len(header).map_err(ChannelError::Frame)?;
        let mut body = vec![0u8; len];
        self.read_full(&mut body, deadline)?;
        wire::decode(&body).map_err(ChannelError::Frame)
    }

    fn read_full(&mut self, mut buf: &mut [u8], deadline: Instant) -> Result<(), ChannelError> {
        while !buf.is_empty() {
            self.stream
                .set_read_timeout(Some(remaining(deadline)?))
                .map_err(ChannelError::Io)?;
            match recv_all(&self.stream, buf) {
                Ok(0) => return Err(ChannelError::Eof),
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(classify(e)),
            }
        }
        Ok(())
    }
}

/// One `recv(MSG_WAITALL)`: blocks until `buf` is full, the read timeout passes, the peer
/// closes, or a signal arrives, and returns what it got. A plain `read` returns each piece
/// qemu writes, waking this thread many times per large frame; on a 2-core machine those
/// wake-ups compete with qemu itself (measured: a 64 MiB device read took ~0.5 s of
/// transfer with `read`, ~0.25 s with this).
fn recv_all(stream: &UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the fd is a live socket owned by `stream` for the whole call, and the
    // pointer/length describe `buf`, which is writable and not otherwise borrowed.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_WAITALL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // OK: recv returns at most buf.len(), which fits in usize.
    Ok(n as usize)
}

/// Enlarges the send buffer of `qemu_end` (qemu's end of the socketpair) as far as this
/// process may, and returns the size the kernel reports. The RPC port is a
/// `virtserialport`, which qemu throttles (the guest waits) while the socket is full;
/// a larger buffer means fewer such stalls on big replies.
///
/// (A `virtconsole`, port 0, would instead *drop* what does not fit: never use one for
/// the RPC channel.)
pub fn enlarge_send_buffer(qemu_end: &UnixStream) -> usize {
    let want: libc::c_int = 8 << 20;
    let fd = qemu_end.as_raw_fd();
    let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
        // SAFETY: `fd` is a valid socket for the duration of the call; the option value
        // points at a live c_int of the size passed.
        let r =
            unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&raw const want).cast(), size) };
        if r == 0 {
            break;
        }
    }
    let mut got: libc::c_int = 0;
    let mut len = size;
    // SAFETY: as above; `got` and `len` are live and writable, `len` holds their size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw mut got).cast(),
            &raw mut len,
        )
    };
    if r == 0 {
        usize::try_from(got).unwrap_or(0)
    } else {
        0
    }
}

/// Time left before `deadline` (a zero timeout means "block forever" to the socket API,
/// so an expired deadline is reported here instead).
fn remaining(deadline: Instant) -> Result<Duration, ChannelError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(ChannelError::Timeout)
    } else {
        Ok(left)
    }
}

fn classify(e: io::Error) -> ChannelError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ChannelError::Timeout,
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => ChannelError::Eof,
        _ => ChannelError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{Call, Request, ToHost};

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn roundtrip_both_ways() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Channel::new(a), Channel::new(b));
        let call = Call {
            id: 9,
            request: Request::Ping,
        };
        a.send(&call, soon()).unwrap();
        assert_eq!(b.recv::<Call>(soon()).unwrap(), call);
        b.send(&ToHost::Panic("x".into()), soon()).unwrap();
        assert_eq!(a.recv::<ToHost>(soon()).unwrap(), ToHost::Panic("x".into()));
    }

    #[test]
    fn oversize_length_refused() {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(&u32::MAX.to_le_bytes()).unwrap();
        let mut a = Channel::new(a);
        assert!(matches!(
            a.recv::<ToHost>(soon()),
            Err(ChannelError::Frame(FrameError::TooLarge(u32::MAX)))
        ));
    }

    #[test]
    fn garbage_body_is_malformed() {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff]).unwrap();
        let mut a = Channel::new(a);
        assert!(matches!(
            a.recv::<ToHost>(soon()),
            Err(ChannelError::Frame(FrameError::Malformed))
        ));
    }

    #[test]
    fn eof_mid_frame_and_before_frame() {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(&[10, 0, 0, 0, 1, 2]).unwrap();
        drop(b);
        let mut a = Channel::new(a);
        assert!(matches!(a.recv::<ToHost>(soon()), Err(ChannelError::Eof)));
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let mut a = Channel::new(a);
        assert!(matches!(a.recv::<ToHost>(soon()), Err(ChannelError::Eof)));
        assert!(matches!(
            a.send(&ToHost::Panic(String::new()), soon()),
            Err(ChannelError::Eof)
        ));
    }

    #[test]
    fn send_buffer_grows_or_stays() {
        let (a, _b) = UnixStream::pair().unwrap();
        // At least the kernel's default (net.core.wmem_default, doubled).
        assert!(enlarge_send_buffer(&a) >= 64 << 10);
    }

    #[test]
    fn silence_times_out() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut a = Channel::new(a);
        let d = Instant::now() + Duration::from_millis(20);
        assert!(matches!(a.recv::<ToHost>(d), Err(ChannelError::Timeout)));
        // An expired deadline never turns into "block forever".
        assert!(matches!(
            a.recv::<ToHost>(Instant::now()),
            Err(ChannelError::Timeout)
        ));
    }
}
