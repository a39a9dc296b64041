//! A session with one running appliance: the Hello handshake, then calls over the RPC
//! channel until shutdown. The session knows the channel, the backend's handle to the
//! appliance ([`BackendHandle`]) and what it keeps per disk slot (read-only or not, the
//! image skiff opened, hot-added disks); nothing else about how the appliance runs.
//! Any failure of the channel (EOF, timeout, bad frame) closes the session and becomes
//! a typed error; the appliance is ended on drop.
//!
//! - [`channel`]: frames over the socket, with deadlines.
//! - `calls`: one request, one reply (ids, timeouts, pipelining).
//! - `device`: the disk list and raw device I/O.
//! - [`fs`]: partitions, mounts and file calls.
//! - [`meta`]: owners, times, extended attributes, the clock, sync.
//! - [`hotplug`]: disks added and removed after launch (the backend does the plugging).

pub mod attrs;
pub(crate) mod calls;
pub mod channel;
mod device;
pub mod fs;
pub mod hotplug;
pub mod meta;
pub mod transfer;
pub mod tree;

pub(crate) use calls::unexpected;

use crate::backend::{BackendHandle, Detached, Failure, Launched};
use crate::error::{Error, Result};
use crate::images::{ChainEntry, OpenedImage};
use crate::session::channel::{Channel, ChannelError, Waiting};
use hotplug::HotDrive;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use wire::{Device, MAX_CHUNK, PROTOCOL_VERSION, Reply, Request, ToHost};

/// The least time the appliance gets to power off once it answered Shutdown.
const POWEROFF_GRACE: Duration = Duration::from_secs(5);

/// A running appliance, ready for calls.
pub struct Session {
    channel: Channel,
    /// Where and how the appliance runs (the backend's part).
    backend: Box<dyn BackendHandle>,
    devices: Vec<Device>,
    /// Per disk slot: did the caller attach it read-only?
    readonly: Vec<bool>,
    /// Per disk slot: the image skiff opened for it (qemu has copies of its fds). Kept
    /// to show chains and to check written images' headers when the session ends.
    images: Vec<Option<OpenedImage>>,
    /// The disks hot-added and still attached.
    hot: Vec<HotDrive>,
    /// Hot-added disks must be read-only ([`Session::restrict_to_readonly_drives`]).
    readonly_only: bool,
    next_id: u64,
    call_timeout: Duration,
    /// The most data one read call asks for ([`MAX_CHUNK`] but in tests).
    read_chunk: u32,
    closed: bool,
    /// The appliance's memory, when this process launched it ([`Session::memory_mib`]).
    memory_mib: Option<u32>,
    /// When the host's clock was last sent ([`wire::Request::SetClock`]): before the
    /// first change of a session, and again before a change once it is a second old.
    clock_sent: Option<Instant>,
    /// The caller set the clock ([`Session::set_clock`]): the host's is not sent.
    clock_fixed: bool,
    /// Keys for hot-added encrypted qcow2 images ([`crate::Builder::keys`]).
    pub(crate) keys: crate::volumes::KeySet,
}

impl Session {
    /// The session on a freshly launched appliance: waits for its Hello, then lets the
    /// backend finish the launch.
    pub(crate) fn launched(
        l: Launched,
        launch_timeout: Duration,
        call_timeout: Duration,
    ) -> Result<Session> {
        let mut s = Session::start(
            Channel::new(l.stream),
            l.handle,
            l.readonly,
            l.deadline,
            launch_timeout,
            call_timeout,
            MAX_CHUNK,
        )?;
        s.images = l.images.into_iter().map(Some).collect();
        if let Err(f) = s.backend.ready(l.deadline) {
            return Err(s.failed(f));
        }
        // qemu has read the keys of encrypted images: drop their memfds.
        for img in s.images.iter_mut().flatten() {
            img.forget_secrets();
        }
        Ok(s)
    }

    /// Waits (until `deadline`) for the appliance's Hello and checks its version.
    pub(crate) fn start(
        channel: Channel,
        backend: Box<dyn BackendHandle>,
        readonly: Vec<bool>,
        deadline: Instant,
        launch_timeout: Duration,
        call_timeout: Duration,
        read_chunk: u32,
    ) -> Result<Session> {
        let mut s = Session::new(channel, backend, readonly, call_timeout, read_chunk);
        let hello = match s.channel.recv::<ToHost>(deadline) {
            Ok(ToHost::Hello(h)) => h,
            Ok(ToHost::Panic(message)) => return Err(s.crashed(message)),
            Ok(other) => {
                let e = Error::BadFrame(format!("expected Hello, got {}", calls::what(&other)));
                return Err(s.fail(e));
            }
            Err(e) => return Err(s.channel_failed(e, Waiting::Launch(launch_timeout))),
        };
        if hello.version != PROTOCOL_VERSION {
            return Err(s.fail(Error::VersionMismatch {
                expected: PROTOCOL_VERSION,
                got: hello.version,
            }));
        }
        s.devices = hello.devices;
        Ok(s)
    }

    /// Takes over an appliance that another process launched and handed down: `stream`
    /// is its RPC channel (see [`Session::inherit_into`] and
    /// [`crate::process::inherited_socket`]), past the Hello, with no call in flight.
    /// `readonly` says, per disk slot, whether the disk was attached read-only. qemu stays
    /// the launching process's child: [`Session::shutdown`] powers the appliance off and
    /// returns without waiting for qemu, and only that process can kill it.
    ///
    /// This is how `skiff each --pool` runs each image's command in a child `skiff`
    /// against a pre-booted appliance the parent took from its [`crate::Pool`].
    pub fn adopt(
        stream: UnixStream,
        readonly: Vec<bool>,
        call_timeout: Duration,
    ) -> Result<Session> {
        let mut s = Session::new(
            Channel::new(stream),
            Box::new(Detached),
            readonly,
            call_timeout,
            MAX_CHUNK,
        );
        s.refresh_devices()?;
        Ok(s)
    }

    /// A session on `channel` before any exchange.
    fn new(
        channel: Channel,
        backend: Box<dyn BackendHandle>,
        readonly: Vec<bool>,
        call_timeout: Duration,
        read_chunk: u32,
    ) -> Session {
        Session {
            channel,
            backend,
            devices: Vec::new(),
            readonly,
            images: Vec::new(),
            hot: Vec::new(),
            readonly_only: false,
            next_id: 1,
            call_timeout,
            read_chunk: read_chunk.clamp(1, MAX_CHUNK),
            closed: false,
            memory_mib: None,
            clock_sent: None,
            clock_fixed: false,
            keys: crate::volumes::KeySet::new(),
        }
    }

    /// Lets the process `cmd` will spawn inherit this session's RPC channel and returns
    /// the fd number it gets there, for that process's [`Session::adopt`]. Until the
    /// child is done, this process must make no call on the session (the two would read
    /// each other's replies); dropping the session afterwards still destroys the
    /// appliance. Other children spawned meanwhile do not inherit the channel.
    pub fn inherit_into(&self, cmd: &mut std::process::Command) -> RawFd {
        let fd = self.channel.stream.as_raw_fd();
        crate::confine::process::inherit_fds(cmd, vec![fd]);
        fd
    }

    /// Flushes every disk, powers the appliance off and waits for it to end (qemu to
    /// exit); then reads the header of every writable image again
    /// ([`OpenedImage::verify_unchanged`]): a header re-pointed during the session is
    /// [`Error::ImageTampered`].
    pub fn shutdown(mut self) -> Result<()> {
        let r = self.power_off();
        let verified = self.verify_images();
        verified.and(r)
    }

    /// The backing chain of each disk skiff opened, by device name (`/dev/sda`).
    pub fn chains(&self) -> Vec<(String, Vec<ChainEntry>)> {
        self.images
            .iter()
            .enumerate()
            .filter_map(|(slot, img)| Some((wire::disk_name(slot), img.as_ref()?.chain())))
            .collect()
    }

    /// Checks the header of every writable image skiff opened (see
    /// [`OpenedImage::verify_unchanged`]); the first failure is returned.
    pub fn verify_images(&self) -> Result<()> {
        for img in self.images.iter().flatten() {
            if img.top().writable {
                img.verify_unchanged()?;
            }
        }
        Ok(())
    }

    /// Sets (or clears) the image of disk `slot`; returns the one it replaces.
    fn set_slot_image(&mut self, slot: usize, img: Option<OpenedImage>) -> Option<OpenedImage> {
        if self.images.len() <= slot {
            self.images.resize_with(slot + 1, || None);
        }
        std::mem::replace(&mut self.images[slot], img)
    }

    fn power_off(&mut self) -> Result<()> {
        match self.call(Request::Shutdown)? {
            Reply::Unit => {}
            other => return Err(unexpected(&other)),
        }
        self.closed = true;
        self.backend
            .wait_poweroff(self.call_timeout.max(POWEROFF_GRACE))
    }

    /// The appliance's memory in MiB, when this process launched it
    /// ([`crate::Builder::memory_mib`]); `None` for an adopted appliance.
    pub fn memory_mib(&self) -> Option<u32> {
        self.memory_mib
    }

    pub(crate) fn set_memory_mib(&mut self, mib: u32) {
        self.memory_mib = Some(mib);
    }

    /// What the appliance printed on its debug port so far (plus qemu's own messages).
    pub fn log(&self) -> String {
        self.backend.log()
    }

    /// qemu's process id (when qemu is a child of this process).
    pub fn qemu_pid(&self) -> Option<u32> {
        self.backend.pid()
    }

    /// True when the appliance is known to have exited.
    pub(crate) fn has_exited(&mut self) -> bool {
        self.backend.has_exited()
    }

    /// Closes the session (ends the appliance) and returns `e`.
    pub(crate) fn fail(&mut self, e: Error) -> Error {
        self.closed = true;
        self.backend.kill();
        e
    }

    /// A backend failure: closes the session if it was fatal.
    fn failed(&mut self, f: Failure) -> Error {
        if f.fatal { self.fail(f.error) } else { f.error }
    }

    /// The appliance sent its panic message: let it exit, then report the crash.
    fn crashed(&mut self, message: String) -> Error {
        self.closed = true;
        self.backend.panicked();
        Error::ApplianceCrashed { message }
    }

    /// Turns a channel failure into the error the caller should see.
    fn channel_failed(&mut self, e: ChannelError, waiting: Waiting) -> Error {
        self.closed = true;
        self.backend.channel_failed(e, waiting)
    }
}

impl Drop for Session {
    /// A session dropped without [`Session::shutdown`] ends its appliance; a writable
    /// image whose header changed meanwhile is reported on stderr (there is no caller
    /// left to return the error to).
    fn drop(&mut self) {
        if !self.images.iter().flatten().any(|i| i.top().writable) {
            return;
        }
        self.backend.kill();
        if let Err(e) = self.verify_images() {
            eprintln!("skiff: WARNING: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::thread;
    use wire::{Bytes, Call, ErrorKind, Hello, disk_slot};

    fn dev(name: &str, size: u64, readonly: bool) -> Device {
        Device {
            name: name.into(),
            size,
            readonly,
        }
    }

    fn hello(version: u32) -> ToHost {
        ToHost::Hello(Hello {
            version,
            devices: vec![dev("/dev/sda", 4096, false), dev("/dev/sdb", 512, true)],
        })
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    /// Starts a session against a fake appliance thread running `peer`.
    fn with_peer(
        readonly: Vec<bool>,
        peer: impl FnOnce(Channel) + Send + 'static,
    ) -> (Result<Session>, thread::JoinHandle<()>) {
        let (a, b) = UnixStream::pair().unwrap();
        let t = thread::spawn(move || peer(Channel::new(b)));
        let s = Session::start(
            Channel::new(a),
            Box::new(Detached),
            readonly,
            later(),
            Duration::from_secs(10),
            Duration::from_millis(500),
            1000,
        );
        (s, t)
    }

    /// A well-behaved appliance serving a 4 KiB /dev/sda and a read-only /dev/sdb.
    fn disk_bytes() -> Vec<u8> {
        (0..4096).map(|i| (i % 251) as u8).collect()
    }

    /// A fake appliance: says Hello, answers each call with `respond` until Shutdown
    /// (answered with Unit) or the host goes away.
    fn run_peer(mut ch: Channel, mut respond: impl FnMut(Request) -> Result<Reply, wire::Error>) {
        ch.send(&hello(PROTOCOL_VERSION), later()).unwrap();
        while let Ok(call) = ch.recv::<Call>(later()) {
            let shutdown = call.request == Request::Shutdown;
            let result = if shutdown {
                Ok(Reply::Unit)
            } else {
                respond(call.request)
            };
            let sent = ch.send(
                &ToHost::Reply {
                    id: call.id,
                    result,
                },
                later(),
            );
            if shutdown {
                return;
            }
            sent.unwrap();
        }
    }

    fn serve(ch: Channel) {
        let mut disk = disk_bytes();
        run_peer(ch, |request| match request {
            Request::Ping | Request::Sync => Ok(Reply::Unit),
            Request::Devices => Ok(Reply::Devices(vec![dev("/dev/sda", 4096, false)])),
            Request::PreadDevice { len, .. } if len > 1000 => Err(wire::Error::new(
                ErrorKind::TooLarge,
                "read chunk over 1000",
            )),
            Request::PreadDevice { offset, len, .. } => {
                let s = (offset as usize).min(disk.len());
                let e = (s + len as usize).min(disk.len());
                Ok(Reply::Data(Bytes(disk[s..e].to_vec())))
            }
            Request::PwriteDevice {
                device,
                offset,
                data,
            } => {
                if device == "/dev/sdb" {
                    Err(wire::Error::new(ErrorKind::ReadOnly, device))
                } else {
                    let o = offset as usize;
                    disk[o..o + data.0.len()].copy_from_slice(&data.0);
                    Ok(Reply::Written(data.0.len() as u64))
                }
            }
            _ => Err(wire::Error::new(ErrorKind::Unsupported, "")),
        });
    }

    #[test]
    fn handshake_calls_and_shutdown() {
        let (s, t) = with_peer(vec![false, true], serve);
        let mut s = s.unwrap();
        assert_eq!(s.devices().len(), 2);
        s.ping().unwrap();
        // 1000-byte read chunks: several calls.
        assert!(s.pread_device("/dev/sda", 0, 4096).unwrap() == disk_bytes());
        let data = s.pread_device("/dev/sda", 4000, 200).unwrap();
        assert_eq!(data.len(), 96, "short at the end of the device");
        assert_eq!(data[0], (4000 % 251) as u8);
        s.pwrite_device("/dev/sda", 10, b"hello").unwrap();
        assert_eq!(s.pread_device("/dev/sda", 10, 5).unwrap(), b"hello");
        assert!(matches!(
            s.pwrite_device("/dev/sdb", 0, b"x"),
            Err(Error::ReadOnly { .. })
        ));
        assert!(matches!(
            s.pwrite_device("/dev/sdb1", 0, b"x"),
            Err(Error::ReadOnly { .. })
        ));
        // The appliance's own refusal comes back as a Remote error, session still usable.
        match s.call(Request::PwriteDevice {
            device: "/dev/sdb".into(),
            offset: 0,
            data: Bytes(vec![1]),
        }) {
            Err(Error::Remote(e)) => assert_eq!(e.kind, ErrorKind::ReadOnly),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.refresh_devices().unwrap().len(), 1);
        s.shutdown().unwrap();
        t.join().unwrap();
    }

    /// A fake appliance serving one file, `/f`, of `size` bytes whose Pread fails at
    /// `fail_at` (if any): for the pipelined download.
    fn file_peer(size: u64, fail_at: Option<u64>) -> impl FnOnce(Channel) + Send + 'static {
        move |ch: Channel| {
            run_peer(ch, |request| match request {
                Request::Ping => Ok(Reply::Unit),
                Request::Stat { .. } => Ok(Reply::Stat(wire::Stat {
                    file_type: wire::FileType::Regular,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    size,
                    nlink: 1,
                    ino: 0,
                    mtime: 0,
                    atime: 0,
                    ctime: 0,
                })),
                Request::Pread { offset, .. } if Some(offset) == fail_at => {
                    Err(wire::Error::new(ErrorKind::Io, "bad block"))
                }
                Request::Pread { offset, len, .. } => {
                    let end = (offset + u64::from(len)).min(size);
                    let n = end.saturating_sub(offset) as usize;
                    Ok(Reply::Data(Bytes(vec![(offset >> 20) as u8; n])))
                }
                _ => Err(wire::Error::new(ErrorKind::Unsupported, "")),
            })
        }
    }

    #[test]
    fn pipelined_download_stays_in_step() {
        let chunk = u64::from(wire::MAX_CHUNK);
        // A short last chunk while the next read is already in flight.
        let size = chunk * 2 + 12345;
        let (s, t) = with_peer(vec![false], file_peer(size, None));
        let mut s = s.unwrap();
        let mut out = Vec::new();
        assert_eq!(s.download("/f", &mut out).unwrap(), size);
        assert_eq!(out.len() as u64, size);
        assert!(out[..chunk as usize].iter().all(|&b| b == 0));
        assert!(
            out[chunk as usize..2 * chunk as usize]
                .iter()
                .all(|&b| b == 1)
        );
        assert!(out[2 * chunk as usize..].iter().all(|&b| b == 2));
        s.ping().unwrap();
        s.shutdown().unwrap();
        t.join().unwrap();

        // An error reply in the middle, with another read in flight: the error is
        // reported and the session still answers the next call.
        let (s, t) = with_peer(vec![false], file_peer(chunk * 5, Some(chunk)));
        let mut s = s.unwrap();
        let mut out = Vec::new();
        match s.download("/f", &mut out) {
            Err(Error::Remote(e)) => assert_eq!(e.kind, ErrorKind::Io),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            out.len() as u64,
            chunk,
            "the chunk before the error was written"
        );
        s.ping().unwrap();
        s.shutdown().unwrap();
        t.join().unwrap();
    }

    #[test]
    fn version_mismatch_refused() {
        let (s, t) = with_peer(vec![], |mut ch| {
            ch.send(&hello(PROTOCOL_VERSION + 1000), later()).unwrap();
        });
        match s {
            Err(Error::VersionMismatch { expected, got }) => {
                assert_eq!(expected, PROTOCOL_VERSION);
                assert_eq!(got, PROTOCOL_VERSION + 1000);
            }
            other => panic!("{:?}", other.err()),
        }
        t.join().unwrap();
    }

    #[test]
    fn panic_before_hello_is_a_crash() {
        let (s, t) = with_peer(vec![], |mut ch| {
            ch.send(&ToHost::Panic("boom at x.rs:1".into()), later())
                .unwrap();
        });
        match s {
            Err(Error::ApplianceCrashed { message }) => assert_eq!(message, "boom at x.rs:1"),
            other => panic!("{:?}", other.err()),
        }
        t.join().unwrap();
    }

    #[test]
    fn panic_during_call_is_a_crash_and_closes() {
        let (s, t) = with_peer(vec![], |mut ch| {
            ch.send(&hello(PROTOCOL_VERSION), later()).unwrap();
            let _ = ch.recv::<Call>(later()).unwrap();
            ch.send(&ToHost::Panic("oops".into()), later()).unwrap();
        });
        let mut s = s.unwrap();
        assert!(matches!(s.ping(), Err(Error::ApplianceCrashed { message }) if message == "oops"));
        assert!(matches!(s.ping(), Err(Error::Closed)));
        t.join().unwrap();
    }

    #[test]
    fn wrong_reply_id_is_a_bad_frame() {
        let (s, t) = with_peer(vec![], |mut ch| {
            ch.send(&hello(PROTOCOL_VERSION), later()).unwrap();
            let call = ch.recv::<Call>(later()).unwrap();
            let reply = ToHost::Reply {
                id: call.id + 1,
                result: Ok(Reply::Unit),
            };
            ch.send(&reply, later()).unwrap();
        });
        let mut s = s.unwrap();
        assert!(matches!(s.ping(), Err(Error::BadFrame(m)) if m.contains("expected call 1")));
        assert!(matches!(s.ping(), Err(Error::Closed)));
        t.join().unwrap();
    }

    #[test]
    fn garbage_and_oversize_frames_are_bad_frames() {
        let (s, t) = with_peer(vec![], |ch| {
            let mut raw = ch.stream;
            raw.write_all(&[2, 0, 0, 0, 0xee, 0xee]).unwrap();
        });
        assert!(matches!(s, Err(Error::BadFrame(m)) if m.contains("malformed")));
        t.join().unwrap();

        let (s, t) = with_peer(vec![], |mut ch| {
            ch.send(&hello(PROTOCOL_VERSION), later()).unwrap();
            let _ = ch.recv::<Call>(later()).unwrap();
            ch.stream
                .write_all(&(wire::MAX_FRAME + 1).to_le_bytes())
                .unwrap();
        });
        let mut s = s.unwrap();
        assert!(matches!(s.ping(), Err(Error::BadFrame(m)) if m.contains("exceeds")));
        t.join().unwrap();
    }

    #[test]
    fn first_frame_must_be_hello() {
        let (s, t) = with_peer(vec![], |mut ch| {
            let r = ToHost::Reply {
                id: 1,
                result: Ok(Reply::Unit),
            };
            ch.send(&r, later()).unwrap();
        });
        assert!(matches!(s, Err(Error::BadFrame(m)) if m.contains("expected Hello")));
        t.join().unwrap();
    }

    #[test]
    fn eof_and_silence() {
        let (s, t) = with_peer(vec![], drop);
        assert!(matches!(s, Err(Error::ApplianceExited { .. })));
        t.join().unwrap();

        let (s, t) = with_peer(vec![], |mut ch| {
            ch.send(&hello(PROTOCOL_VERSION), later()).unwrap();
            // Read the call, never answer, hold the channel open until the host gives up.
            let _ = ch.recv::<Call>(later());
            let _ = ch.recv::<Call>(later());
        });
        let mut s = s.unwrap();
        assert!(matches!(s.ping(), Err(Error::CallTimeout(_))));
        drop(s);
        t.join().unwrap();

        let (s, t) = with_peer(vec![], |mut ch| {
            ch.send(&hello(PROTOCOL_VERSION), later()).unwrap();
        });
        let mut s = s.unwrap();
        t.join().unwrap();
        assert!(matches!(s.ping(), Err(Error::ApplianceExited { .. })));
    }

    #[test]
    fn session_moves_between_threads() {
        fn send<T: Send>() {}
        send::<Session>();
    }

    #[test]
    fn helpers() {
        assert_eq!(disk_slot("/dev/sda"), Some(0));
        assert_eq!(disk_slot("/dev/sdc"), Some(2));
        assert_eq!(disk_slot("/dev/sdz"), Some(25));
        assert_eq!(disk_slot("/dev/sdaa"), Some(26));
        assert_eq!(disk_slot("/dev/vda"), None);
        assert_eq!(disk_slot("/dev/sd"), None);
        assert_eq!(
            unexpected(&Reply::Written(3)).to_string(),
            "bad frame from the appliance: unexpected reply Written"
        );
    }
}
