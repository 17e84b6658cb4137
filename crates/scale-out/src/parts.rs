//! The real parts, started by the code that needs them: `redis-server`,
//! the instances (this crate's own binary, `scale-out instance`, so that
//! killing one is a real `kill -9` of a real process) and `haproxy`, each on
//! free loopback ports, with its files in a temporary directory.
//!
//! Every part is a [`Part`]: dropping it kills the process and waits for
//! it, so a test that fails half-way, or a demo stopped with Ctrl-C (the
//! terminal sends SIGINT to the whole group, and the demo returns and drops
//! everything), leaves nothing running.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The external programs this lesson needs.
pub const PROGRAMS: [&str; 2] = ["redis-server", "haproxy"];

/// The one line to print where they are missing.
pub const INSTALL_HINT: &str = "install them: apt-get install redis-server haproxy (Debian, Ubuntu); brew install redis haproxy (macOS)";

/// How long a part may take to start listening. Redis and HAProxy start in
/// milliseconds; an instance in well under a second, even in a debug build
/// on a busy 2-core machine. Ten seconds means it will not.
pub const START_WAIT: Duration = Duration::from_secs(10);

/// Where to find a program: `PATH`, then the sbin folders a non-root
/// `PATH` often lacks (Debian puts haproxy in /usr/sbin).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let file = if cfg!(windows) { format!("{name}.exe") } else { name.to_owned() };
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(&file))
        .find(|p| p.is_file())
}

/// `None` if both programs are here; else one line naming what is missing
/// and how to install it.
pub fn missing_programs() -> Option<String> {
    let missing: Vec<&str> = PROGRAMS.into_iter().filter(|p| find_program(p).is_none()).collect();
    if missing.is_empty() {
        return None;
    }
    Some(format!("scale-out needs {} (not found); {INSTALL_HINT}", missing.join(" and ")))
}

/// A child process that is killed, and waited for, when dropped.
#[derive(Debug)]
pub struct Part {
    name: String,
    child: Child,
    /// Held open so an instance notices its parent is gone (stdin ends)
    /// even when the parent could not kill it.
    _stdin: Option<ChildStdin>,
}

impl Part {
    /// The operating system's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has ended.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills it at once (SIGKILL on Unix, TerminateProcess on Windows: no
    /// goodbye, no cleanup) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `deadline` for it to end by itself; kills it if not.
    pub fn wait_or_kill(&mut self, deadline: Duration) {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if self.has_exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!("{} did not stop within {deadline:?}; killing it", self.name);
        self.kill();
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A directory under the system's temporary folder, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> io::Result<Self> {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{what}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nobody is listening on right now. Another process could
/// take it before ours binds it; the starters below try again if so.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `addr`, or `child`
/// exits, or [`START_WAIT`] passes.
fn wait_listening(part: &mut Part, addr: SocketAddr) -> anyhow::Result<()> {
    let end = Instant::now() + START_WAIT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if part.has_exited() {
            bail!("{} exited before listening on {addr}", part.name);
        }
        if Instant::now() > end {
            bail!("{} did not listen on {addr} within {START_WAIT:?}", part.name);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `redis-server` on a free loopback port, its files in a temporary folder.
#[derive(Debug)]
pub struct Redis {
    part: Part,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    /// Starts it. No snapshots on a timer and no append-only file: nothing
    /// is written unless [`Redis::restart`] asks for it.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            match Self::start_on(dir, port) {
                Ok(redis) => return Ok(redis),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three attempts").context("starting redis-server"))
    }

    fn start_on(dir: &Path, port: u16) -> anyhow::Result<Self> {
        let program = find_program("redis-server").context("redis-server not found")?;
        let child = Command::new(program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning redis-server")?;
        let mut part = Part { name: "redis-server".into(), child, _stdin: None };
        wait_listening(&mut part, SocketAddr::from(([127, 0, 0, 1], port)))?;
        Ok(Self { part, port, dir: dir.to_owned() })
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn part(&mut self) -> &mut Part {
        &mut self.part
    }

    /// Stops Redis the way an operator does before a restart (`SHUTDOWN
    /// SAVE`: the data goes to `dump.rdb` in its folder first). Every
    /// client's connection breaks.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        // SHUTDOWN answers nothing when it works: the connection just ends.
        let mut conn = TcpStream::connect(("127.0.0.1", self.port))?;
        io::Write::write_all(&mut conn, b"SHUTDOWN SAVE\r\n")?;
        conn.set_read_timeout(Some(START_WAIT))?;
        let _ = conn.read(&mut [0; 64]);
        self.part.wait_or_kill(START_WAIT);
        Ok(())
    }

    /// Starts it again on the same port and folder, where it loads what
    /// [`Redis::stop`] saved.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let mut again = Self::start_on(&self.dir, self.port)?;
        // Swap the new process in; dropping the old (ended) one is a no-op.
        std::mem::swap(&mut self.part, &mut again.part);
        Ok(())
    }

    /// [`Redis::stop`], then [`Redis::start_again`]; returns how long Redis
    /// was away.
    pub fn restart(&mut self) -> anyhow::Result<Duration> {
        let down = Instant::now();
        self.stop()?;
        self.start_again()?;
        Ok(down.elapsed())
    }
}

/// How to start an instance: a program and the arguments that make it one
/// (`scale-out instance`; the bench runs its own binary the same way, as
/// `bench scale-out --instance`), before `--redis URL --name NAME`, and any
/// arguments after them (`--hold-ms 200`).
#[derive(Debug, Clone)]
pub struct Launcher {
    pub program: PathBuf,
    pub before: Vec<String>,
    pub after: Vec<String>,
}

impl Launcher {
    /// This crate's binary at `exe`, as `exe instance`.
    pub fn this_crate(exe: PathBuf) -> Self {
        Self { program: exe, before: vec!["instance".into()], after: Vec::new() }
    }

    /// The same, with `args` after the rest.
    pub fn with(mut self, args: &[&str]) -> Self {
        self.after.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }
}

/// One instance process, which prints where it listens once it does.
#[derive(Debug)]
pub struct InstanceProcess {
    pub part: Part,
    pub name: String,
    pub chat: SocketAddr,
    pub push: SocketAddr,
    /// Lesson 6's long polling with this instance's own feed, and with the
    /// feed in Redis.
    pub lp_local: SocketAddr,
    pub lp_shared: SocketAddr,
}

impl InstanceProcess {
    /// Starts `exe instance --redis URL --name NAME` and reads its `ready`
    /// line: `ready chat=ADDR push=ADDR lp-local=ADDR lp-shared=ADDR`.
    pub fn start(launcher: &Launcher, redis_url: &str, name: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(&launcher.program)
            .args(&launcher.before)
            .args(["--redis", redis_url, "--name", name])
            .args(&launcher.after)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {}", launcher.program.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("instance stdout")?;
        let part = Part { name: name.to_owned(), child, _stdin: stdin };
        // Read the ready line on a thread, so a stuck instance cannot hang us.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep draining, so the instance never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(START_WAIT) {
            Ok(Some(Ok(line))) => line,
            _ => bail!("instance {name} did not say it was ready within {START_WAIT:?}"),
        };
        let addr = |key: &str| -> anyhow::Result<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|a| a.parse().ok())
                .with_context(|| format!("instance {name} said {line:?}"))
        };
        let (chat, push) = (addr("chat=")?, addr("push=")?);
        let (lp_local, lp_shared) = (addr("lp-local=")?, addr("lp-shared=")?);
        Ok(Self { part, name: name.to_owned(), chat, push, lp_local, lp_shared })
    }
}

/// HAProxy's configuration, written for the instances given.
fn haproxy_config(ports: [u16; 6], instances: &[InstanceProcess]) -> String {
    let [chat, push, stats, lp_local, lp_sticky, lp_shared] = ports;
    let mut cfg = String::from(
        "# Written by scale-out (crates/scale-out/src/parts.rs); chapter 16 explains each line.
global
    maxconn 4096

defaults
    mode http
    # An instance that does not accept within 1 s is down; try another.
    timeout connect 1s
    # An HTTP request (a publish, a long poll) may take this long.
    timeout client 30s
    timeout server 30s
    # After the WebSocket upgrade, the connection is a tunnel: lesson 8's
    # heartbeat pings every 30 s, so an hour of tunnel timeout never cuts a
    # live chat, and still frees a forgotten one.
    timeout tunnel 1h
    timeout client-fin 1s
    timeout server-fin 1s
    # A refused connection (an instance that just died) is retried, on
    # another instance (redispatch), before the client sees an error.
    retries 3
    option redispatch
    default-server inter 500ms fall 2 rise 2
",
    );
    type Pick = fn(&InstanceProcess) -> SocketAddr;
    let backends: [(&str, u16, Pick, bool); 5] = [
        ("chat", chat, |i| i.chat, false),
        ("push", push, |i| i.push, false),
        // Lesson 6 with each instance's own feed, spread freely...
        ("lp-local", lp_local, |i| i.lp_local, false),
        // ...the same, each client pinned to one instance by a cookie...
        ("lp-sticky", lp_sticky, |i| i.lp_local, true),
        // ...and the feed in Redis, spread freely.
        ("lp-shared", lp_shared, |i| i.lp_shared, false),
    ];
    for (what, port, pick, sticky) in backends {
        let _ = write!(
            cfg,
            "
frontend {what}
    bind 127.0.0.1:{port}
    default_backend {what}

backend {what}
    balance roundrobin
"
        );
        if sticky {
            // HAProxy adds `Set-Cookie: SERVERID=<name>` to the first
            // answer and sends every request that carries it back to that
            // server (`indirect`: the server never sees the cookie;
            // `nocache`: no shared cache keeps one client's cookie for all).
            cfg.push_str("    cookie SERVERID insert indirect nocache\n");
        }
        for i in instances {
            let cookie = if sticky { format!(" cookie {}", i.name) } else { String::new() };
            let _ = writeln!(cfg, "    server {} {} check{cookie}", i.name, pick(i));
        }
    }
    let _ = write!(
        cfg,
        "
frontend stats
    bind 127.0.0.1:{stats}
    stats enable
    stats uri /
    stats refresh 1s
"
    );
    cfg
}

/// `haproxy -f CFG -db` (in the foreground, no daemon), in front of the
/// instances.
#[derive(Debug)]
pub struct Haproxy {
    pub part: Part,
    pub chat: SocketAddr,
    pub push: SocketAddr,
    pub stats: SocketAddr,
    /// Lesson 6's long polling: own feeds, own feeds with cookie
    /// stickiness, the feed in Redis.
    pub lp_local: SocketAddr,
    pub lp_sticky: SocketAddr,
    pub lp_shared: SocketAddr,
    pub config: PathBuf,
}

impl Haproxy {
    pub fn start(
        dir: &Path,
        ports: Option<[u16; 6]>,
        instances: &[InstanceProcess],
    ) -> anyhow::Result<Self> {
        // Free ports may be taken by someone else before HAProxy binds
        // them: try new ones. Fixed ports (`serve`) get one attempt.
        let attempts = if ports.is_some() { 1 } else { 3 };
        let mut last = None;
        for _ in 0..attempts {
            let ports = match ports {
                Some(p) => p,
                None => {
                    let mut p = [0; 6];
                    for port in &mut p {
                        *port = free_port()?;
                    }
                    p
                }
            };
            match Self::start_on(dir, ports, instances) {
                Ok(h) => return Ok(h),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three attempts").context("starting haproxy"))
    }

    fn start_on(
        dir: &Path,
        ports: [u16; 6],
        instances: &[InstanceProcess],
    ) -> anyhow::Result<Self> {
        let program = find_program("haproxy").context("haproxy not found")?;
        let config = dir.join("haproxy.cfg");
        std::fs::write(&config, haproxy_config(ports, instances))?;
        let log = std::fs::File::create(dir.join("haproxy.log"))?;
        let child = Command::new(program)
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning haproxy")?;
        let mut part = Part { name: "haproxy".into(), child, _stdin: None };
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        for port in ports {
            wait_listening(&mut part, at(port))?;
        }
        let [chat, push, stats, lp_local, lp_sticky, lp_shared] = ports.map(at);
        Ok(Self { part, chat, push, stats, lp_local, lp_sticky, lp_shared, config })
    }
}

/// Redis, N instances and HAProxy, started in that order and stopped in
/// the reverse order when dropped.
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order: the proxy first, then the instances, then
    // Redis, then the folder.
    pub haproxy: Haproxy,
    pub instances: Vec<InstanceProcess>,
    pub redis: Redis,
    pub dir: TempDir,
}

impl Cluster {
    /// Starts everything. `launcher` starts an instance (this crate's
    /// binary: `current_exe()` in main, `env!("CARGO_BIN_EXE_scale-out")` in
    /// tests); `ports` fixes HAProxy's ports (`serve`: chat, push, stats,
    /// and the three long-poll frontends), else free ones are used.
    pub fn start(
        launcher: &Launcher,
        instances: usize,
        ports: Option<[u16; 6]>,
    ) -> anyhow::Result<Self> {
        if let Some(missing) = missing_programs() {
            bail!(missing);
        }
        let dir = TempDir::new("scale-out")?;
        let redis = Redis::start(dir.path())?;
        let instances = (1..=instances)
            .map(|n| InstanceProcess::start(launcher, &redis.url(), &format!("i{n}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let haproxy = Haproxy::start(dir.path(), ports, &instances)?;
        Ok(Self { haproxy, instances, redis, dir })
    }

    /// The process ids of every part, for a check that none outlives us.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.haproxy.part.pid(), self.redis.part.pid()];
        pids.extend(self.instances.iter().map(|i| i.part.pid()));
        pids
    }

    /// `ws://` at HAProxy's chat and push ports.
    pub fn chat_url(&self) -> String {
        format!("ws://{}/ws", self.haproxy.chat)
    }

    pub fn push_url(&self) -> String {
        format!("ws://{}/ws", self.haproxy.push)
    }
}
