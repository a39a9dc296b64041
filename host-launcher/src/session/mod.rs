//! A session with one running appliance: the Hello handshake, calls with id checks and
//! timeouts, chunked device I/O, shutdown. Any failure of the channel (EOF, timeout, bad
//! frame) closes the session and becomes a typed error; qemu is killed on drop.

pub mod channel;
pub mod fs;

use crate::confine::process::{self, EXIT_CLEAN, EXIT_PANIC, Qemu};
use crate::error::{Error, Result};
use crate::images::{ChainEntry, OpenedImage};
use crate::session::channel::{Channel, ChannelError};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use wire::{Bytes, Call, Device, MAX_CHUNK, PROTOCOL_VERSION, Reply, Request, ToHost, disk_slot};

/// How long qemu may take to exit once the channel closed or the appliance panicked.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// An appliance that is not a qemu child of this process (the libvirt backend's domain):
/// held by the session and ended with it (on drop too).
pub trait Guest: Send {
    /// After Shutdown was answered: waits up to `limit` for the appliance to power off;
    /// false when it did not.
    fn wait_poweroff(&mut self, limit: Duration) -> bool;
    /// Ends the appliance now (idempotent).
    fn kill(&mut self);
    /// What the appliance logged, where this process can read it.
    fn log(&self) -> String;
    /// The backend's own state, for backend-specific calls (the libvirt backend's
    /// hotplug); `None` by default.
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
    /// As [`Guest::as_any_mut`], shared.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// A running appliance, ready for calls.
pub struct Session {
    channel: Channel,
    pub(crate) qemu: Option<Qemu>,
    pub(crate) devices: Vec<Device>,
    /// Per disk slot: did the caller attach it read-only?
    pub(crate) readonly: Vec<bool>,
    /// QMP and the root ports of a hotplug launch (see `hotplug.rs`).
    pub(crate) hotplug: Option<crate::backend::direct::hotplug::Hotplug>,
    /// The libvirt domain (or another [`Guest`]) when qemu is not our child.
    pub(crate) guest: Option<Box<dyn Guest>>,
    /// Per disk slot: the image skiff opened for it (qemu has copies of its fds). Kept
    /// to show chains and to check written images' headers when the session ends.
    pub(crate) images: Vec<Option<OpenedImage>>,
    next_id: u64,
    call_timeout: Duration,
    /// The most data one read call asks for ([`MAX_CHUNK`] but in tests).
    read_chunk: u32,
    pub(crate) closed: bool,
}

/// What a failure of the channel interrupted.
#[derive(Clone, Copy)]
enum Phase {
    Launch(Duration),
    Call(Duration),
}

impl Session {
    /// Waits (until `deadline`) for the appliance's Hello and checks its version.
    /// `qemu` is `None` only in tests that play the appliance themselves.
    pub(crate) fn start(
        channel: Channel,
        qemu: Option<Qemu>,
        readonly: Vec<bool>,
        deadline: Instant,
        launch_timeout: Duration,
        call_timeout: Duration,
        read_chunk: u32,
    ) -> Result<Session> {
        let mut s = Session::new(channel, qemu, readonly, call_timeout, read_chunk);
        let hello = match s.channel.recv::<ToHost>(deadline) {
            Ok(ToHost::Hello(h)) => h,
            Ok(ToHost::Panic(message)) => return Err(s.crashed(message)),
            Ok(other) => {
                let e = Error::BadFrame(format!("expected Hello, got {}", what(&other)));
                return Err(s.fail(e));
            }
            Err(e) => return Err(s.channel_failed(e, Phase::Launch(launch_timeout))),
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
    /// [`crate::confine::process::inherited_socket`]), past the Hello, with no call in flight.
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
            None,
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
        qemu: Option<Qemu>,
        readonly: Vec<bool>,
        call_timeout: Duration,
        read_chunk: u32,
    ) -> Session {
        Session {
            channel,
            qemu,
            devices: Vec::new(),
            readonly,
            hotplug: None,
            guest: None,
            images: Vec::new(),
            next_id: 1,
            call_timeout,
            read_chunk: read_chunk.clamp(1, MAX_CHUNK),
            closed: false,
        }
    }

    /// Lets the process `cmd` will spawn inherit this session's RPC channel and returns
    /// the fd number it gets there, for that process's [`Session::adopt`]. Until the
    /// child is done, this process must make no call on the session (the two would read
    /// each other's replies); dropping the session afterwards still destroys the
    /// appliance. Other children spawned meanwhile do not inherit the channel.
    pub fn inherit_into(&self, cmd: &mut std::process::Command) -> RawFd {
        let fd = self.channel.stream.as_raw_fd();
        process::inherit_fds(cmd, vec![fd]);
        fd
    }

    /// The whole-disk devices, as of the Hello or the last [`Session::refresh_devices`].
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// Asks the appliance for its device list again.
    pub fn refresh_devices(&mut self) -> Result<&[Device]> {
        match self.call(Request::Devices)? {
            Reply::Devices(d) => {
                self.devices = d;
                Ok(&self.devices)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Sends one request and waits (up to the call timeout) for its reply. An error reply
    /// is [`Error::Remote`] and leaves the session usable; anything else that goes wrong
    /// closes it.
    pub fn call(&mut self, request: Request) -> Result<Reply> {
        let id = self.submit(request)?;
        self.complete(id)
    }

    /// Sends a request without waiting for its reply; returns its id for
    /// [`Session::complete`]. Several calls may be in flight: the appliance answers them
    /// in order, so pipelining lets it work on the next call while the host handles the
    /// previous reply. Every submitted call must be completed, in submission order,
    /// before any other call.
    pub fn submit(&mut self, request: Request) -> Result<u64> {
        if self.closed {
            return Err(Error::Closed);
        }
        let id = self.next_id;
        self.next_id += 1;
        let deadline = Instant::now() + self.call_timeout;
        if let Err(e) = self.channel.send(&Call { id, request }, deadline) {
            return Err(self.channel_failed(e, Phase::Call(self.call_timeout)));
        }
        Ok(id)
    }

    /// Waits (up to the call timeout) for the reply to the submitted call `id`, which must
    /// be the oldest one still in flight.
    pub fn complete(&mut self, id: u64) -> Result<Reply> {
        if self.closed {
            return Err(Error::Closed);
        }
        let phase = Phase::Call(self.call_timeout);
        let deadline = Instant::now() + self.call_timeout;
        match self.channel.recv::<ToHost>(deadline) {
            Ok(ToHost::Reply { id: got, result }) if got == id => result.map_err(Error::Remote),
            Ok(ToHost::Reply { id: got, .. }) => Err(self.fail(Error::BadFrame(format!(
                "reply to call {got}, expected call {id}"
            )))),
            Ok(ToHost::Panic(message)) => Err(self.crashed(message)),
            Ok(other @ ToHost::Hello(_)) => Err(self.fail(Error::BadFrame(format!(
                "expected the reply to call {id}, got {}",
                what(&other)
            )))),
            Err(e) => Err(self.channel_failed(e, phase)),
        }
    }

    /// Sends a Ping and waits for its reply.
    pub fn ping(&mut self) -> Result<()> {
        match self.call(Request::Ping)? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Reads `len` bytes of `device` at `offset`, in calls of at most [`MAX_CHUNK`]. The result is short only where the device
    /// ends (an appliance may also refuse a range past the end with an error).
    pub fn pread_device(&mut self, device: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        offset
            .checked_add(len)
            .ok_or_else(|| Error::InvalidArgument("offset + length overflows".into()))?;
        let mut out = Vec::with_capacity(len.min(64 << 20) as usize);
        while (out.len() as u64) < len {
            let done = out.len() as u64;
            let want = (len - done).min(u64::from(self.read_chunk)) as u32;
            let reply = self.call(Request::PreadDevice {
                device: device.to_string(),
                offset: offset + done,
                len: want,
            })?;
            let Reply::Data(Bytes(data)) = reply else {
                return Err(unexpected(&reply));
            };
            if data.len() > want as usize {
                return Err(Error::BadFrame(format!(
                    "asked for {want} bytes, got {}",
                    data.len()
                )));
            }
            let short = data.len() < want as usize;
            out.extend_from_slice(&data);
            if short {
                break;
            }
        }
        Ok(out)
    }

    /// Writes `data` to `device` at `offset`, in calls of at most [`MAX_CHUNK`].
    /// [`Error::ReadOnly`] for a drive attached read-only.
    pub fn pwrite_device(&mut self, device: &str, offset: u64, data: &[u8]) -> Result<()> {
        if self.is_readonly(device) {
            return Err(Error::ReadOnly {
                device: device.to_string(),
            });
        }
        offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| Error::InvalidArgument("offset + length overflows".into()))?;
        let mut done = 0usize;
        while done < data.len() {
            let end = data.len().min(done + MAX_CHUNK as usize);
            let chunk = &data[done..end];
            let reply = self.call(Request::PwriteDevice {
                device: device.to_string(),
                offset: offset + done as u64,
                data: Bytes(chunk.to_vec()),
            })?;
            match reply {
                Reply::Written(n) if n > 0 && n <= chunk.len() as u64 => done += n as usize,
                Reply::Written(n) => {
                    return Err(Error::BadFrame(format!(
                        "wrote {n} of {} bytes",
                        chunk.len()
                    )));
                }
                other => return Err(unexpected(&other)),
            }
        }
        Ok(())
    }

    /// Flushes every disk, powers the appliance off and waits for qemu to exit; then
    /// reads the header of every writable image again ([`OpenedImage::verify_unchanged`]):
    /// a header re-pointed during the session is [`Error::ImageTampered`].
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
    pub(crate) fn set_slot_image(
        &mut self,
        slot: usize,
        img: Option<OpenedImage>,
    ) -> Option<OpenedImage> {
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
        if let Some(g) = self.guest.as_mut() {
            if !g.wait_poweroff(self.call_timeout.max(EXIT_GRACE)) {
                g.kill();
            }
            return Ok(());
        }
        let Some(q) = self.qemu.as_mut() else {
            return Ok(());
        };
        match q.wait_timeout(self.call_timeout.max(EXIT_GRACE)) {
            Some(s) if s.code() == Some(EXIT_CLEAN) => Ok(()),
            Some(s) => Err(self.exited(s)),
            None => {
                q.kill();
                Err(Error::ApplianceExited {
                    status: "it did not power off after Shutdown; killed".into(),
                    log: q.log(),
                })
            }
        }
    }

    /// What the appliance printed on its debug port so far (plus qemu's own messages).
    pub fn log(&self) -> String {
        self.qemu
            .as_ref()
            .map(Qemu::log)
            .or_else(|| self.guest.as_ref().map(|g| g.log()))
            .unwrap_or_default()
    }

    /// qemu's process id.
    pub fn qemu_pid(&self) -> Option<u32> {
        self.qemu.as_ref().map(Qemu::pid)
    }

    /// True when writes to `device` (a disk or one of its partitions) must be refused
    /// here: the appliance reports it read-only, or the caller attached it read-only.
    fn is_readonly(&self, device: &str) -> bool {
        let disk = device.trim_end_matches(|c: char| c.is_ascii_digit());
        let listed = self.devices.iter().any(|d| d.name == disk && d.readonly);
        let asked = disk_slot(disk)
            .and_then(|i| self.readonly.get(i).copied())
            .unwrap_or(false);
        listed || asked
    }

    /// Closes the session (kills qemu) and returns `e`.
    pub(crate) fn fail(&mut self, e: Error) -> Error {
        self.closed = true;
        if let Some(q) = self.qemu.as_mut() {
            q.kill();
        }
        if let Some(g) = self.guest.as_mut() {
            g.kill();
        }
        e
    }

    /// The appliance sent its panic message: let qemu exit, then report the crash.
    fn crashed(&mut self, message: String) -> Error {
        self.closed = true;
        if let Some(q) = self.qemu.as_mut()
            && q.wait_timeout(EXIT_GRACE).is_none()
        {
            q.kill();
        }
        Error::ApplianceCrashed { message }
    }

    /// Turns a channel failure into the error the caller should see.
    fn channel_failed(&mut self, e: ChannelError, phase: Phase) -> Error {
        self.closed = true;
        let Some(q) = self.qemu.as_mut() else {
            return match e {
                ChannelError::Eof => Error::ApplianceExited {
                    status: "channel closed".into(),
                    log: String::new(),
                },
                ChannelError::Timeout => match phase {
                    Phase::Launch(d) => Error::LaunchTimeout(d),
                    Phase::Call(d) => Error::CallTimeout(d),
                },
                ChannelError::Frame(f) => Error::BadFrame(f.to_string()),
                ChannelError::Io(e) => Error::Io(e),
            };
        };
        match e {
            ChannelError::Eof => match q.wait_timeout(EXIT_GRACE) {
                Some(s) => self.exited(s),
                None => {
                    q.kill();
                    Error::ApplianceExited {
                        status: "it closed the channel but kept running; killed".into(),
                        log: q.log(),
                    }
                }
            },
            ChannelError::Timeout => match q.try_status() {
                Some(s) => self.exited(s),
                None => {
                    q.kill();
                    match phase {
                        Phase::Launch(d) => Error::LaunchTimeout(d),
                        Phase::Call(d) => Error::CallTimeout(d),
                    }
                }
            },
            ChannelError::Frame(f) => self.fail(Error::BadFrame(f.to_string())),
            ChannelError::Io(e) => self.fail(Error::Io(e)),
        }
    }

    /// The error for a qemu that exited with `status` when it should not have.
    pub(crate) fn exited(&mut self, status: ExitStatus) -> Error {
        let log = match self.qemu.as_mut() {
            Some(q) => q.final_log(),
            None => String::new(),
        };
        if status.code() == Some(EXIT_PANIC) {
            return Error::ApplianceCrashed {
                message: panic_message(&log),
            };
        }
        Error::ApplianceExited {
            status: process::describe(Some(status)),
            log,
        }
    }
}

/// The panic message in an appliance log: from the first line that mentions a panic to
/// the end (a few lines at most), else the last non-empty line.
fn panic_message(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines
        .iter()
        .position(|l| l.to_ascii_lowercase().contains("panic"))
    {
        Some(i) => lines[i..]
            .iter()
            .take(8)
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
        None => lines
            .last()
            .map_or("no message (qemu exited with the panic status)", |l| l)
            .to_string(),
    }
}

fn what(msg: &ToHost) -> String {
    match msg {
        ToHost::Hello(h) => format!("Hello (version {})", h.version),
        ToHost::Reply { id, .. } => format!("a reply to call {id}"),
        ToHost::Panic(_) => "a panic".into(),
    }
}

/// A reply of the wrong kind for the request.
pub(crate) fn unexpected(reply: &Reply) -> Error {
    let name = format!("{reply:?}");
    let name = name.split(['(', ' ', '{']).next().unwrap_or("?");
    Error::BadFrame(format!("unexpected reply {name}"))
}

impl Drop for Session {
    /// A session dropped without [`Session::shutdown`] kills its appliance; a writable
    /// image whose header changed meanwhile is reported on stderr (there is no caller
    /// left to return the error to).
    fn drop(&mut self) {
        if !self.images.iter().flatten().any(|i| i.top().writable) {
            return;
        }
        if let Some(q) = self.qemu.as_mut() {
            q.kill();
        }
        if let Some(g) = self.guest.as_mut() {
            g.kill();
        }
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
    use wire::{ErrorKind, Hello};

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
            None,
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
            panic_message("boot\npanicked at src/main.rs:3:\nskiff.test=panic\n\n"),
            "panicked at src/main.rs:3:\nskiff.test=panic"
        );
        assert_eq!(panic_message("a\nlast\n\n"), "last");
        assert_eq!(
            unexpected(&Reply::Written(3)).to_string(),
            "bad frame from the appliance: unexpected reply Written"
        );
    }
}
