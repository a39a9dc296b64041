//! A QMP client on our end of the QMP socketpair, over the `qapi` crate (typed commands and
//! events from QEMU's own schema, sync I/O). This module adds what a launcher needs
//! around it: a deadline on every exchange, a greeting read that reports EOF as an error
//! (qapi's own handshake panics on it), events kept for later waits, and a connection that
//! is marked broken after any I/O or decoding failure (the line stream may be out of step).

use qapi::qmp::{Event, QmpCommand};
use qapi::{Command, ExecuteError, Stream};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// qemu answered the command with an error.
    #[error("{class:?}: {desc}")]
    Refused {
        class: qapi::ErrorClass,
        desc: String,
    },
    /// qemu closed the monitor (it exited).
    #[error("qemu closed the QMP monitor")]
    Eof,
    /// No answer before the deadline.
    #[error("QMP timed out")]
    Timeout,
    /// Anything else: I/O or a line that does not decode. The connection is unusable.
    #[error("QMP: {0}")]
    Io(io::Error),
}

/// How long the no-op that collects events may take.
const NOP_TIMEOUT: Duration = Duration::from_secs(10);

type Inner = qapi::Qmp<Stream<BufReader<UnixStream>, UnixStream>>;

/// A QMP connection after the capabilities negotiation.
pub struct Qmp {
    inner: Inner,
    /// Another handle on the same socket: timeouts and polling.
    sock: UnixStream,
    events: Vec<Event>,
    broken: bool,
}

impl Qmp {
    /// Reads qemu's greeting and negotiates capabilities, giving up at `deadline`.
    pub fn connect(stream: UnixStream, deadline: Instant) -> Result<Qmp, QmpError> {
        let sock = stream.try_clone().map_err(QmpError::Io)?;
        let reader = BufReader::new(stream.try_clone().map_err(QmpError::Io)?);
        let mut q = Qmp {
            inner: qapi::Qmp::new(Stream::new(reader, stream)),
            sock,
            events: Vec::new(),
            broken: false,
        };
        q.set_deadline(deadline)?;
        // qapi's read_capabilities panics at EOF: look for a first byte ourselves.
        match q.inner.inner_mut().fill_buf() {
            Ok([]) => {
                q.broken = true;
                return Err(QmpError::Eof);
            }
            Ok(_) => {}
            Err(e) => return Err(q.io_failed(e)),
        }
        let r = q.inner.handshake();
        q.finish(r).map(|_| ())?;
        Ok(q)
    }

    /// Runs one command, waiting for its answer until `deadline`. Events that come
    /// first are kept for [`Qmp::wait_event`].
    pub fn execute<C: QmpCommand>(
        &mut self,
        command: &C,
        deadline: Instant,
    ) -> Result<C::Ok, QmpError> {
        if self.broken {
            return Err(QmpError::Eof);
        }
        self.set_deadline(deadline)?;
        let r = self.inner.execute(command);
        self.finish(r)
    }

    /// Waits until `pick` accepts an event (earlier or later ones stay queued), or the
    /// deadline passes.
    pub fn wait_event(
        &mut self,
        mut pick: impl FnMut(&Event) -> bool,
        deadline: Instant,
    ) -> Result<Event, QmpError> {
        loop {
            self.events.extend(self.inner.events());
            if let Some(i) = self.events.iter().position(&mut pick) {
                return Ok(self.events.remove(i));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(QmpError::Timeout);
            }
            // Sleep until qemu writes something, then let a no-op command collect the
            // events before its answer. A line already buffered needs no wait.
            if self.inner.inner().get_ref_read().buffer().is_empty() {
                poll_readable(&self.sock, deadline - now)?;
            }
            // The no-op gets time of its own: a read cut short would break the stream.
            let nop_deadline = deadline.max(Instant::now() + NOP_TIMEOUT);
            self.execute(&qapi::qmp::query_version {}, nop_deadline)?;
        }
    }

    /// `add-fd`: hands qemu a copy of `fd` (SCM_RIGHTS, with the command) in a new fd
    /// set and returns the set's id, for a `file` node's `/dev/fdset/N`. qemu opens no
    /// path for a disk added this way.
    pub fn add_fd(&mut self, fd: RawFd, deadline: Instant) -> Result<u32, QmpError> {
        if self.broken {
            return Err(QmpError::Eof);
        }
        self.set_deadline(deadline)?;
        let mut line = serde_json::to_vec(&serde_json::json!({
            "execute": "add-fd",
            "arguments": {},
        }))
        .map_err(|e| QmpError::Io(io::Error::other(e)))?;
        line.push(b'\n');
        if let Err(e) = send_with_fd(&self.sock, &line, fd) {
            return Err(self.io_failed(e));
        }
        let r = self.inner.read_response::<qapi::qmp::add_fd>();
        let info = self.finish(r)?;
        u32::try_from(info.fdset_id).map_err(|_| {
            QmpError::Io(io::Error::other(format!(
                "add-fd: fd set id {} out of range",
                info.fdset_id
            )))
        })
    }

    /// Events received so far and not yet taken by [`Qmp::wait_event`].
    pub fn pending_events(&mut self) -> Vec<Event> {
        self.events.extend(self.inner.events());
        std::mem::take(&mut self.events)
    }

    fn set_deadline(&mut self, deadline: Instant) -> Result<(), QmpError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(QmpError::Timeout);
        }
        self.sock
            .set_read_timeout(Some(left))
            .and_then(|()| self.sock.set_write_timeout(Some(left)))
            .map_err(QmpError::Io)
    }

    fn finish<T>(&mut self, r: Result<T, ExecuteError>) -> Result<T, QmpError> {
        match r {
            Ok(v) => Ok(v),
            Err(ExecuteError::Qapi(e)) => Err(QmpError::Refused {
                class: e.class,
                desc: e.desc,
            }),
            Err(ExecuteError::Io(e)) => Err(self.io_failed(e)),
        }
    }

    fn io_failed(&mut self, e: io::Error) -> QmpError {
        self.broken = true;
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => QmpError::Timeout,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset => QmpError::Eof,
            _ => QmpError::Io(e),
        }
    }
}

/// Writes all of `bytes` to `sock`, the first part with `fd` attached (SCM_RIGHTS).
fn send_with_fd(sock: &UnixStream, bytes: &[u8], fd: RawFd) -> io::Result<()> {
    let space = {
        // SAFETY: CMSG_SPACE only computes a size.
        unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize }
    };
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no iov, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    // SAFETY: `msg` points at `control`, which has room for one cmsg carrying one fd
    // (CMSG_SPACE above); CMSG_FIRSTHDR/CMSG_DATA stay inside it.
    let sent = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::copy_nonoverlapping(
            (&fd as *const RawFd).cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            std::mem::size_of::<RawFd>(),
        );
        libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let rest = bytes.get(sent as usize..).unwrap_or_default();
    if !rest.is_empty() {
        (&*sock).write_all(rest)?;
    }
    Ok(())
}

/// Waits up to `limit` for `sock` to become readable (or hung up).
fn poll_readable(sock: &UnixStream, limit: Duration) -> Result<(), QmpError> {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = limit.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: `pfd` is one valid pollfd for a socket that `sock` keeps open for the
    // duration of the call; poll only writes its `revents`.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    match n {
        0 => Err(QmpError::Timeout),
        n if n > 0 => Ok(()),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(QmpError::Io(e))
            }
        }
    }
}

/// The name a [`qapi::Command`] goes by on the wire, for messages.
pub fn command_name<C: Command>(_: &C) -> &'static str {
    C::NAME
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Write};
    use std::thread;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// A fake qemu monitor: greeting, then answers each command with `answer(line)`.
    fn fake(
        answer: impl Fn(&str) -> Vec<String> + Send + 'static,
    ) -> (UnixStream, thread::JoinHandle<()>) {
        let (a, b) = UnixStream::pair().unwrap();
        let t = thread::spawn(move || {
            let mut w = b.try_clone().unwrap();
            writeln!(
                w,
                r#"{{"QMP": {{"version": {{"qemu": {{"micro": 2, "minor": 0, "major": 10}}, "package": ""}}, "capabilities": ["oob"]}}}}"#
            )
            .unwrap();
            let r = std::io::BufReader::new(b);
            for line in r.lines() {
                let Ok(line) = line else { return };
                for out in answer(&line) {
                    if writeln!(w, "{out}").is_err() {
                        return;
                    }
                }
            }
        });
        (a, t)
    }

    #[test]
    fn handshake_command_error_and_events() {
        let (a, t) = fake(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            match v["execute"].as_str().unwrap() {
                "qmp_capabilities" => vec![r#"{"return": {}}"#.into()],
                "device_del" => vec![
                    r#"{"return": {}}"#.into(),
                    r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "DEVICE_DELETED", "data": {"path": "/machine/peripheral/vd1/virtio-backend"}}"#.into(),
                ],
                "query-version" => vec![
                    r#"{"timestamp": {"seconds": 1, "microseconds": 3}, "event": "DEVICE_DELETED", "data": {"device": "vd1", "path": "/machine/peripheral/vd1"}}"#.into(),
                    r#"{"return": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}}"#.into(),
                ],
                _ => vec![
                    r#"{"error": {"class": "GenericError", "desc": "Device 'vd9' not found"}}"#
                        .into(),
                ],
            }
        });
        let mut q = Qmp::connect(a, later()).unwrap();
        let del = qapi::qmp::device_del { id: "vd1".into() };
        assert_eq!(command_name(&del), "device_del");
        q.execute(&del, later()).unwrap();
        let ev = q
            .wait_event(
                |e| matches!(e, Event::DEVICE_DELETED { data, .. } if data.device.as_deref() == Some("vd1")),
                later(),
            )
            .unwrap();
        assert!(matches!(ev, Event::DEVICE_DELETED { .. }));
        // The backend's event stays queued.
        assert_eq!(q.pending_events().len(), 1);
        match q.execute(
            &qapi::qmp::blockdev_del {
                node_name: "d9".into(),
            },
            later(),
        ) {
            Err(QmpError::Refused { desc, .. }) => assert!(desc.contains("vd9")),
            other => panic!("{other:?}"),
        }
        drop(q);
        t.join().unwrap();
    }

    #[test]
    fn eof_and_timeout() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        assert!(matches!(Qmp::connect(a, later()), Err(QmpError::Eof)));

        let (a, b) = UnixStream::pair().unwrap();
        let r = Qmp::connect(a, Instant::now() + Duration::from_millis(50));
        assert!(matches!(r, Err(QmpError::Timeout)), "{:?}", r.err());
        drop(b);
    }
}
