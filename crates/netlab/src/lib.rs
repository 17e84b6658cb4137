//! # Lesson 12: netlab, a link with latency, loss and a bandwidth limit
//!
//! Every lesson so far ran over loopback, where a round trip takes about 50
//! microseconds and nothing is ever lost. Real networks take tens of
//! milliseconds and drop packets, and most of what protocols do (keep-alive,
//! pipelining, HTTP/2, QUIC) exists to fight exactly that. This lesson builds a
//! network you control: two network namespaces, each a private copy of the
//! kernel's network stack, joined by a link that is an ordinary program. Each
//! namespace has a TUN device; the kernel hands every IP packet sent to the
//! other side to our program, which holds it for the configured delay, maybe
//! drops it, makes it wait its turn on a slow wire, and writes it into the
//! other namespace's TUN device, where the kernel delivers it.
//!
//! ```text
//!   server namespace                 this program                client namespace
//!   198.18.0.1 ── nl0 (TUN) ◄──── forwarder, per direction: ────► nl0 (TUN) ── 198.18.0.2
//!                                  loss, queue, rate, delay
//! ```
//!
//! ```text
//! cargo run -p netlab                                   # demo: a 50 ms, 1% loss link, a TCP echo across it
//! cargo run -p netlab -- run --rtt 100ms --loss 1% --rate 10mbit -- SERVER-CMD -- CLIENT-CMD
//! cargo run -p netlab -- shell --rtt 100ms              # a shell on the client side; the server is 198.18.0.1
//! ```
//!
//! It needs root (namespaces and TUN devices) and Linux: on macOS and Windows
//! the crate compiles (the link's model, its parsers and pcap writer are
//! portable), and [`Link::start`] and the command say "needs Linux" instead.
//! Read it beside `docs/12-netlab.md`.

pub mod model;
pub mod parse;
pub mod pcap;

use std::fs::File;
use std::io::{self, BufWriter};
use std::net::Ipv4Addr;
#[cfg(target_os = "linux")]
use std::os::fd::AsFd;
#[cfg(unix)]
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
// What only Linux compiles (the forwarder, entering a namespace) uses these.
#[cfg(target_os = "linux")]
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
#[cfg(target_os = "linux")]
use std::thread;
use std::thread::JoinHandle;
use std::time::Duration;
#[cfg(target_os = "linux")]
use std::time::{Instant, SystemTime};

use anyhow::{Context, bail};

pub use model::{DirectionConfig, Drop as DropReason, GilbertElliott, Shaper};
use pcap::PcapWriter;

/// The server side's address. 198.18.0.0/15 is set aside for benchmarking
/// (RFC 2544): it is never routed on the internet, and nothing else on this
/// machine uses it, so the link cannot collide with a real network.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The client side's address.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The TUN device's name inside each namespace. Each namespace has its own
/// list of devices, so both sides may use the same name.
pub const TUN_NAME: &str = "nl0";
/// Every namespace netlab makes is called `netlab-<pid>-<n>-server` or
/// `-client`, so a later run can tell ours from anyone else's and see whether
/// the process that made it is still alive.
pub const NAMESPACE_PREFIX: &str = "netlab-";

/// Ethernet's MTU, so packet sizes look like the internet's.
pub const DEFAULT_MTU: u16 = 1500;

/// Packets that may be in flight inside the forwarder, per direction, before
/// it drops (counted as queue drops). At 500 Mbit/s and 200 ms of delay about
/// 8,000 full-size packets are in flight; 16,384 leaves room, and bounds the
/// memory at about 25 MB per direction.
pub const MAX_IN_FLIGHT: usize = 16_384;

/// The forwarder threads' nice value. On a busy machine (a compiler on both
/// cores) an ordinary thread can wait milliseconds to run after its sleep
/// ends, and the link gains jitter nobody asked for; a higher priority keeps
/// the delay what was configured. Root may lower nice; if it fails we go on.
#[cfg(target_os = "linux")]
const FORWARDER_NICE: i32 = -10;

/// How often the threads look at the stop flag while nothing happens.
#[cfg(target_os = "linux")]
const STOP_POLL: Duration = Duration::from_millis(50);

/// Which end of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

impl Side {
    pub fn addr(self) -> Ipv4Addr {
        match self {
            Side::Server => SERVER_ADDR,
            Side::Client => CLIENT_ADDR,
        }
    }
    #[cfg(target_os = "linux")]
    fn peer(self) -> Ipv4Addr {
        match self {
            Side::Server => CLIENT_ADDR,
            Side::Client => SERVER_ADDR,
        }
    }
    #[cfg(target_os = "linux")]
    fn name(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }
}

/// The whole link: one [`DirectionConfig`] per direction, the MTU, and where
/// to write a capture.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Client to server (the upload).
    pub up: DirectionConfig,
    /// Server to client (the download).
    pub down: DirectionConfig,
    pub mtu: u16,
    pub pcap: Option<PathBuf>,
}

impl LinkConfig {
    /// The same in both directions: half the round trip each way, the loss and
    /// rate on each. The two directions get different seeds, so their losses
    /// are independent.
    pub fn symmetric(rtt: Duration, loss: f64, rate_bps: Option<u64>) -> Self {
        let one_way =
            DirectionConfig { delay: rtt / 2, loss, rate_bps, ..DirectionConfig::default() };
        LinkConfig {
            up: DirectionConfig { seed: 1, ..one_way.clone() },
            down: DirectionConfig { seed: 2, ..one_way },
            mtu: DEFAULT_MTU,
            pcap: None,
        }
    }
}

/// What one direction did, counted by the forwarder.
#[derive(Debug, Default)]
pub struct Counters {
    /// Packets read from the sending side's TUN device.
    pub arrived: AtomicU64,
    /// Packets written to the receiving side.
    pub sent: AtomicU64,
    /// Bytes of those packets (IP headers included).
    pub bytes: AtomicU64,
    /// Dropped by the loss model.
    pub lost: AtomicU64,
    /// Dropped because the queue was full (tail drop).
    pub queue_dropped: AtomicU64,
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub arrived: u64,
    pub sent: u64,
    pub bytes: u64,
    pub lost: u64,
    pub queue_dropped: u64,
}

impl Counters {
    pub fn snapshot(&self) -> Count {
        Count {
            arrived: self.arrived.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            queue_dropped: self.queue_dropped.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} packets sent ({} bytes), {} lost, {} dropped by the queue",
            self.sent, self.bytes, self.lost, self.queue_dropped
        )
    }
}

type Pcap = Arc<Mutex<PcapWriter<BufWriter<File>>>>;

/// What netlab says on an OS without network namespaces and TUN devices.
pub const NEEDS_LINUX: &str = "needs Linux (network namespaces and TUN devices): \
     on macOS or Windows, run it in a Linux virtual machine or WSL 2";

/// One direction of the forwarder: read a packet from `from`, ask the shaper
/// what happens to it, and hand it to the writer with the instant it is due.
/// Reading and writing are separate threads so a packet waiting out its delay
/// never holds up the reading of the next one.
#[cfg(target_os = "linux")]
fn read_loop(
    from: Arc<tun::Device>,
    mut shaper: Shaper,
    due: SyncSender<(Instant, Vec<u8>)>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    raise_priority();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let n = match from.recv_timeout(&mut buf, STOP_POLL) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading a TUN device failed, this direction stops: {e}");
                return;
            }
        };
        let now = Instant::now();
        counters.arrived.fetch_add(1, Ordering::Relaxed);
        match shaper.admit(now, n) {
            Ok(at) => match due.try_send((at, buf[..n].to_vec())) {
                Ok(()) => {}
                // The writer is MAX_IN_FLIGHT packets behind: the same thing a
                // full queue does on a real link, so it is counted the same.
                Err(TrySendError::Full(_)) => {
                    counters.queue_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => return,
            },
            Err(DropReason::Loss) => {
                counters.lost.fetch_add(1, Ordering::Relaxed);
            }
            Err(DropReason::Queue) => {
                counters.queue_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The other half: wait until each packet is due, then write it into the
/// receiving side's TUN device, where the kernel takes it as if it had come
/// off a wire. Release times never go backwards (the shaper sees to that),
/// so a FIFO channel is all the scheduling we need.
#[cfg(target_os = "linux")]
fn write_loop(
    to: Arc<tun::Device>,
    due: Receiver<(Instant, Vec<u8>)>,
    counters: Arc<Counters>,
    pcap: Option<Pcap>,
    stop: Arc<AtomicBool>,
) {
    raise_priority();
    loop {
        let (at, packet) = match due.recv_timeout(STOP_POLL) {
            Ok(p) => p,
            Err(mpsc::RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => continue,
            Err(_) => return,
        };
        // Sleep in slices so a stop is noticed even behind a long queue.
        loop {
            let now = Instant::now();
            if at <= now || stop.load(Ordering::Relaxed) {
                break;
            }
            thread::sleep((at - now).min(STOP_POLL));
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = to.send(&packet) {
            tracing::debug!("writing to a TUN device failed, packet dropped: {e}");
            continue;
        }
        counters.sent.fetch_add(1, Ordering::Relaxed);
        counters.bytes.fetch_add(packet.len() as u64, Ordering::Relaxed);
        if let Some(pcap) = &pcap {
            let mut w = pcap.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Err(e) = w.record(SystemTime::now(), &packet) {
                tracing::warn!("writing the capture failed: {e}");
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn raise_priority() {
    // On Linux a nice value belongs to a thread, so this moves only this one.
    let me = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(me), FORWARDER_NICE) {
        tracing::debug!("could not raise the forwarder's priority: {e}");
    }
}

/// A running link. Dropping it stops the forwarder, closes the TUN devices and
/// deletes both namespaces, which also ends anything still running in them
/// that was started with [`Link::spawn`].
#[derive(Debug)]
pub struct Link {
    // Field order is drop order: threads stop, then devices close, then the
    // namespaces go.
    forwarder: Forwarder,
    server: Namespace,
    client: Namespace,
    up: Arc<Counters>,
    down: Arc<Counters>,
    pcap: Option<Pcap>,
}

impl Link {
    /// Builds the link: sweep what dead runs left, make the two namespaces,
    /// a TUN device in each, addresses and routes, then start the forwarder.
    /// Every step that made something is undone if a later step fails.
    #[cfg(target_os = "linux")]
    pub fn start(config: LinkConfig) -> anyhow::Result<Link> {
        check_privileges()?;
        sweep_stale();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let server = Namespace::create(format!("{NAMESPACE_PREFIX}{pid}-{n}-server"))?;
        let client = Namespace::create(format!("{NAMESPACE_PREFIX}{pid}-{n}-client"))?;
        let server_tun = Arc::new(server.add_tun(Side::Server, config.mtu)?);
        let client_tun = Arc::new(client.add_tun(Side::Client, config.mtu)?);

        let pcap = match &config.pcap {
            Some(path) => Some(Arc::new(Mutex::new(
                PcapWriter::create(path)
                    .with_context(|| format!("creating the capture {}", path.display()))?,
            ))),
            None => None,
        };
        let up = Arc::new(Counters::default());
        let down = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (from, to, cfg, counters, name) in [
            (&client_tun, &server_tun, &config.up, &up, "up"),
            (&server_tun, &client_tun, &config.down, &down, "down"),
        ] {
            let (tx, rx) = mpsc::sync_channel(MAX_IN_FLIGHT);
            let (from, shaper, c, s) =
                (from.clone(), Shaper::new(cfg.clone()), counters.clone(), stop.clone());
            threads.push(
                thread::Builder::new()
                    .name(format!("netlab-read-{name}"))
                    .spawn(move || read_loop(from, shaper, tx, c, s))?,
            );
            let (to, c, s, p) = (to.clone(), counters.clone(), stop.clone(), pcap.clone());
            threads.push(
                thread::Builder::new()
                    .name(format!("netlab-write-{name}"))
                    .spawn(move || write_loop(to, rx, c, p, s))?,
            );
        }
        Ok(Link { forwarder: Forwarder { stop, threads }, server, client, up, down, pcap })
    }

    /// Elsewhere there are no namespaces to build: [`NEEDS_LINUX`].
    #[cfg(not(target_os = "linux"))]
    pub fn start(_config: LinkConfig) -> anyhow::Result<Link> {
        bail!(NEEDS_LINUX)
    }

    /// The namespace's name, for `ip netns exec NAME ...` by hand.
    pub fn namespace(&self, side: Side) -> &str {
        match side {
            Side::Server => &self.server.name,
            Side::Client => &self.client.name,
        }
    }

    /// Client to server so far.
    pub fn up(&self) -> Count {
        self.up.snapshot()
    }

    /// Server to client so far.
    pub fn down(&self) -> Count {
        self.down.snapshot()
    }

    /// Runs `f` on a new thread that has entered `side`'s namespace: every
    /// socket it opens lives there, so it binds and connects to 198.18.0.x.
    pub fn run_on<T, F>(&self, side: Side, f: F) -> io::Result<JoinHandle<io::Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        in_namespace(self.namespace(side), f)
    }

    /// Runs a short job in `side`'s namespace and waits for its answer:
    /// typically binding a socket there (`link.on(Side::Server, ||
    /// TcpListener::bind((SERVER_ADDR, 0)))`), which then keeps working from
    /// any thread. Errors from entering the namespace, from the job, or a
    /// panic in it, all come back as the one `io::Error`.
    pub fn on<T, F>(&self, side: Side, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        let job = self.run_on(side, f)?;
        job.join().map_err(|_| io::Error::other("the job in the namespace panicked"))??
    }

    /// A `Command` that runs `program` in `side`'s namespace, through
    /// `ip netns exec` (which also gives it a `/sys` of that namespace).
    pub fn command(&self, side: Side, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.namespace(side), program]);
        cmd
    }

    /// Starts `cmd` (from [`Link::command`]) in a process group of its own,
    /// and returns a guard that kills the whole group when dropped, so a
    /// `sh -c` and everything it started go with it.
    pub fn spawn(&self, mut cmd: Command) -> io::Result<ChildGuard> {
        #[cfg(unix)]
        cmd.process_group(0);
        Ok(ChildGuard { child: Some(cmd.spawn()?) })
    }

    /// Stops the link and returns the final counts (up, down).
    pub fn stop(self) -> (Count, Count) {
        let counts = (self.up(), self.down());
        drop(self);
        counts
    }
}

impl std::ops::Drop for Link {
    fn drop(&mut self) {
        self.forwarder.stop();
        if let Some(pcap) = &self.pcap {
            let mut w = pcap.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Err(e) = w.flush() {
                tracing::warn!("flushing the capture failed: {e}");
            }
        }
    }
}

#[derive(Debug)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // made only by Link::start
struct Forwarder {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Forwarder {
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl std::ops::Drop for Forwarder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A child process started with [`Link::spawn`]; dropping it kills its whole
/// process group and reaps it.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the child to finish on its own.
    pub fn wait(mut self) -> io::Result<std::process::ExitStatus> {
        let mut child = self.child.take().expect("a guard holds its child until waited");
        child.wait()
    }

    /// Has it finished? (Without waiting.)
    pub fn try_wait(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        match &mut self.child {
            Some(c) => c.try_wait(),
            None => Ok(None),
        }
    }
}

impl std::ops::Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            #[cfg(unix)]
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One network namespace made with `ip netns add`; deleted when dropped.
#[derive(Debug)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // made only by Link::start
struct Namespace {
    name: String,
}

#[cfg(target_os = "linux")]
impl Namespace {
    fn create(name: String) -> anyhow::Result<Namespace> {
        ip(&["netns", "add", &name])?;
        let ns = Namespace { name };
        // A namespace starts with only `lo`, and even that is down.
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        // IPv6 would send its own packets across the link on its own
        // (neighbour discovery, MLD), which muddles counts and captures. The
        // link carries IPv4 only.
        run(Command::new("ip").args([
            "netns",
            "exec",
            &ns.name,
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]))?;
        Ok(ns)
    }

    /// Opens a TUN device from inside the namespace (a TUN device belongs to
    /// the namespace of the thread that creates it), then gives it its address
    /// and a route to the other side.
    fn add_tun(&self, side: Side, mtu: u16) -> anyhow::Result<tun::Device> {
        let device = in_namespace(&self.name, || {
            let mut config = tun::Configuration::default();
            config.tun_name(TUN_NAME).platform_config(|p| {
                // We set addresses with `ip` below; skip the crate's own setup.
                p.ensure_root_privileges(false);
            });
            tun::create(&config)
        })
        .context("starting a thread in the namespace")?
        .join()
        .map_err(|_| anyhow::anyhow!("the TUN thread panicked"))?
        .with_context(|| format!("entering namespace {}", self.name))?
        .with_context(|| format!("creating a TUN device in {}", self.name))?;
        let (me, peer) = (side.addr().to_string(), side.peer().to_string());
        ip(&["-n", &self.name, "addr", "add", &me, "peer", &peer, "dev", TUN_NAME])?;
        ip(&["-n", &self.name, "link", "set", TUN_NAME, "mtu", &mtu.to_string(), "up"])?;
        tracing::debug!("{} side: {me} on {TUN_NAME} in {}", side.name(), self.name);
        Ok(device)
    }
}

impl std::ops::Drop for Namespace {
    fn drop(&mut self) {
        kill_everything_in(&self.name);
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            tracing::warn!("could not delete namespace {}: {e:#}", self.name);
        }
    }
}

/// Runs `f` on a new thread inside the named namespace. The thread enters it
/// with setns(2); only this thread moves, the rest of the process stays put.
#[cfg(target_os = "linux")]
fn in_namespace<T, F>(name: &str, f: F) -> io::Result<JoinHandle<io::Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let handle = File::open(Path::new("/run/netns").join(name))?;
    thread::Builder::new().name(format!("in-{name}")).spawn(move || {
        rustix::thread::move_into_link_name_space(
            handle.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        drop(handle);
        Ok(f())
    })
}

/// Elsewhere there is no namespace to enter.
#[cfg(not(target_os = "linux"))]
fn in_namespace<T, F>(_name: &str, _f: F) -> io::Result<JoinHandle<io::Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    Err(io::Error::new(io::ErrorKind::Unsupported, NEEDS_LINUX))
}

/// Refuses early, in one line, where the link cannot be built.
pub fn check_privileges() -> anyhow::Result<()> {
    if !cfg!(target_os = "linux") {
        bail!(NEEDS_LINUX);
    }
    #[cfg(unix)]
    if !rustix::process::geteuid().is_root() {
        bail!(
            "needs root to create network namespaces and TUN devices: run it as root (sudo -E cargo run -p netlab), or in CI"
        );
    }
    if !Path::new("/dev/net/tun").exists() {
        bail!("needs /dev/net/tun, which this kernel or container does not offer");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        bail!("needs the `ip` command from iproute2 (apt-get install iproute2)");
    }
    Ok(())
}

/// Deletes every namespace a dead netlab process left behind (after killing
/// whatever still runs in it). A namespace whose creator is alive, even a
/// parallel test, is left alone. Returns the names it deleted.
pub fn sweep_stale() -> Vec<String> {
    let mut swept = Vec::new();
    for name in our_namespaces() {
        let pid: Option<u32> = name
            .strip_prefix(NAMESPACE_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse().ok());
        let Some(pid) = pid else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_everything_in(&name);
        if ip(&["netns", "del", &name]).is_ok() {
            tracing::info!("swept namespace {name} left by dead process {pid}");
            swept.push(name);
        }
    }
    swept
}

/// Deletes every namespace this process made, killing what runs in them:
/// for a Ctrl-C handler, which ends the process without running any Drop.
pub fn remove_this_process_namespaces() {
    let mine = format!("{NAMESPACE_PREFIX}{}-", std::process::id());
    for name in our_namespaces().iter().filter(|n| n.starts_with(&mine)) {
        kill_everything_in(name);
        let _ = ip(&["netns", "del", name]);
    }
}

/// The names of netlab's namespaces that exist now (any process's).
pub fn our_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NAMESPACE_PREFIX))
        .map(str::to_owned)
        .collect()
}

/// The processes that live in a namespace, as `ip netns pids` reports them.
pub fn pids_in(name: &str) -> Vec<i32> {
    let out = Command::new("ip").args(["netns", "pids", name]).output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

#[cfg(unix)]
fn kill_everything_in(name: &str) {
    for pid in pids_in(name) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Without Unix signals there is nothing to kill with, and no namespace to
/// kill in.
#[cfg(not(unix))]
fn kill_everything_in(_name: &str) {}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?} (is iproute2 installed?)"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
