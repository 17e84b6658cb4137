//! The command line of lesson 12. With no arguments it runs the demo; see
//! `cargo run -p netlab -- --help`. Everything needs root, or a
//! user namespace of its own, which it enters by itself when not root.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use netlab::{DirectionConfig, GilbertElliott, Link, LinkConfig, SERVER_ADDR, Side, parse};

#[derive(Parser)]
#[command(
    about = "Lesson 12: two network namespaces joined by a link with latency, loss and a rate"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run SERVER-CMD on the server side (198.18.0.1) and CLIENT-CMD on the client
    /// side (198.18.0.2): `run --rtt 100ms -- SERVER-CMD ARGS -- CLIENT-CMD ARGS`.
    /// Exits with the client's status once the client ends.
    Run {
        #[command(flatten)]
        link: LinkArgs,
        /// Start the client at once instead of waiting for the server command
        /// to open a listening socket.
        #[arg(long)]
        no_wait: bool,
        /// The server's command, `--`, then the client's command.
        #[arg(last = true, required = true)]
        commands: Vec<String>,
    },
    /// Open a shell on the client side; the server side is 198.18.0.1.
    Shell {
        #[command(flatten)]
        link: LinkArgs,
        /// A command to run on the server side while the shell is open,
        /// e.g. --server 'python3 -m http.server -b 198.18.0.1 8000'.
        #[arg(long)]
        server: Option<String>,
    },
}

#[derive(Args, Clone)]
struct LinkArgs {
    /// Round-trip time: half of it is added in each direction.
    #[arg(long, default_value = "50ms", value_parser = parse::duration)]
    rtt: Duration,
    /// Each packet's one-way delay varies by up to this much (no reordering).
    #[arg(long, default_value = "0ms", value_parser = parse::duration)]
    jitter: Duration,
    /// Random loss in each direction, e.g. 1% or 0.01.
    #[arg(long, default_value = "0%", value_parser = parse::probability)]
    loss: f64,
    /// Bursty loss (Gilbert-Elliott) as P(good->bad),P(bad->good), e.g. 1%,25%:
    /// while bad every packet is lost.
    #[arg(long, value_parser = parse_burst)]
    burst: Option<GilbertElliott>,
    /// Bandwidth in each direction, e.g. 10mbit. Unlimited if not given.
    #[arg(long, value_parser = parse::rate)]
    rate: Option<u64>,
    /// Bytes that may wait in front of the rate limit (tail drop beyond).
    #[arg(long, default_value = "96kb", value_parser = parse::bytes)]
    queue: usize,
    /// The TUN devices' MTU.
    #[arg(long, default_value_t = netlab::DEFAULT_MTU)]
    mtu: u16,
    /// Seed of the random losses and jitter (the same seed repeats a run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write every packet that crossed the link to this pcap file.
    #[arg(long)]
    pcap: Option<PathBuf>,
}

fn parse_burst(s: &str) -> Result<GilbertElliott, String> {
    let (a, b) = s.split_once(',').ok_or("burst loss is P(good->bad),P(bad->good), e.g. 1%,25%")?;
    Ok(GilbertElliott {
        good_to_bad: parse::probability(a)?,
        bad_to_good: parse::probability(b)?,
        loss_in_good: 0.0,
        loss_in_bad: 1.0,
    })
}

impl LinkArgs {
    fn config(&self) -> LinkConfig {
        let one = DirectionConfig {
            delay: self.rtt / 2,
            jitter: self.jitter,
            loss: self.loss,
            burst: self.burst,
            rate_bps: self.rate,
            queue_bytes: self.queue,
            seed: self.seed,
        };
        LinkConfig {
            up: DirectionConfig { seed: self.seed.wrapping_mul(2), ..one.clone() },
            down: DirectionConfig { seed: self.seed.wrapping_mul(2) + 1, ..one },
            mtu: self.mtu,
            pcap: self.pcap.clone(),
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("RTT {:?}", self.rtt);
        if !self.jitter.is_zero() {
            s += &format!(" ± {:?}", self.jitter);
        }
        s += &format!(", {}% loss", self.loss * 100.0);
        if let Some(b) = self.burst {
            s += &format!(", bursty loss averaging {:.1}%", b.mean_loss() * 100.0);
        }
        if let Some(r) = self.rate {
            s += &format!(", {} Mbit/s, queue {} bytes", r as f64 / 1e6, self.queue);
        }
        s
    }
}

/// While a `shell` runs, Ctrl-C belongs to the shell, not to us.
static CTRL_C_IS_THE_SHELLS: AtomicBool = AtomicBool::new(false);

fn main() -> ExitCode {
    harness::init_logging_at("warn");
    if let Some(code) = reenter_in_user_namespace() {
        return code;
    }
    // Ctrl-C: delete our namespaces (killing what runs in them) before we go.
    // A plain SIGINT would skip every Drop and leave them for the next run's
    // sweep. The TUN devices close with the process.
    let _ = ctrlc::set_handler(|| {
        if CTRL_C_IS_THE_SHELLS.load(Ordering::Relaxed) {
            return;
        }
        netlab::remove_this_process_namespaces();
        eprintln!("netlab: interrupted; link removed");
        std::process::exit(130);
    });
    let result = match Cli::parse().command {
        None => demo(),
        Some(Command::Run { link, no_wait, commands }) => run(&link, no_wait, &commands),
        Some(Command::Shell { link, server }) => shell(&link, server.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netlab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Set in the copy of us that runs inside the user namespace, so it does not
/// try to enter another.
#[cfg(target_os = "linux")]
const IN_USER_NAMESPACE: &str = "NETLAB_IN_USER_NAMESPACE";

/// What the copy of us runs first, inside the new user and mount namespaces:
/// `ip netns` keeps its namespaces in `/run/netns`, which only the real root
/// may create; a private tmpfs over `/run`, seen by this process tree alone,
/// gives it one. Then it becomes netlab again, with the same arguments.
#[cfg(target_os = "linux")]
const USER_NAMESPACE_SCRIPT: &str = r#"mount -t tmpfs netlab-run /run && exec "$@""#;

/// The unprivileged path. An ordinary user may, on most Linux desktops,
/// create a user namespace in which it is root: root over the network
/// namespaces and TUN devices it creates there, and over nothing else on
/// the machine. A running, multi-threaded process cannot enter a new user
/// namespace itself, so we start a copy of ourselves inside one with
/// `unshare --user --map-root-user --mount --net` and pass on its exit
/// status. The copy gets a network namespace of its own too: `ip netns add`
/// steps back into its caller's network namespace after making a new one,
/// which a user namespace may do only in a namespace it owns (the machine's
/// answers "setns: Operation not permitted"). Loopback there is empty and
/// unused; the link is between the two namespaces netlab makes.
/// `None` means: carry on here (already root, already inside, or user
/// namespaces are not allowed, in which case `check_privileges` says why).
#[cfg(target_os = "linux")]
fn reenter_in_user_namespace() -> Option<ExitCode> {
    if rustix::process::geteuid().is_root() || std::env::var_os(IN_USER_NAMESPACE).is_some() {
        return None;
    }
    // Can we? (Off on some kernels: kernel.unprivileged_userns_clone=0,
    // user.max_user_namespaces=0, or an AppArmor rule as on Ubuntu 24.04.)
    let allowed = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--net", "true"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    eprintln!("netlab: not root: running in a user namespace of our own (no sudo needed)");
    // Ctrl-C reaches the copy too (same terminal, same process group); it
    // removes the link, and we wait for it rather than die first.
    let _ = ctrlc::set_handler(|| {});
    let status = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--net", "--", "sh", "-c"])
        .arg(USER_NAMESPACE_SCRIPT)
        .arg("netlab")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(IN_USER_NAMESPACE, "1")
        .status();
    Some(match status {
        Ok(s) => match s.code() {
            Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
            None => ExitCode::from(130),
        },
        Err(e) => {
            eprintln!("netlab: could not start unshare: {e}");
            ExitCode::FAILURE
        }
    })
}

/// No user namespaces elsewhere: carry on, and `check_privileges` says
/// "needs Linux".
#[cfg(not(target_os = "linux"))]
fn reenter_in_user_namespace() -> Option<ExitCode> {
    None
}

/// The demo's port on the server side. The server side is a namespace of its
/// own, so this port cannot clash with anything on the machine.
const DEMO_PORT: u16 = 7012;

fn demo() -> anyhow::Result<ExitCode> {
    let rtt = Duration::from_millis(50);
    let loss = 0.01;
    netlab::check_privileges()?;
    println!("building a link: {rtt:?} round trip, {}% loss each way", loss * 100.0);
    let link = Link::start(LinkConfig::symmetric(rtt, loss, None))?;
    println!(
        "  server side: namespace {} at {SERVER_ADDR}\n  client side: namespace {} at {}",
        link.namespace(Side::Server),
        link.namespace(Side::Client),
        netlab::CLIENT_ADDR
    );

    // A socket belongs to the namespace it was created in, wherever it is used
    // later: bind on a thread inside the server side, then serve from here.
    let listener = link.run_on(Side::Server, || TcpListener::bind((SERVER_ADDR, DEMO_PORT)))?;
    let listener = listener.join().map_err(|_| anyhow::anyhow!("bind thread panicked"))???;
    let server = thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        let mut reader = conn.try_clone()?;
        std::io::copy(&mut reader, &mut conn)?;
        conn.shutdown(Shutdown::Write)
    });

    let client =
        link.run_on(Side::Client, || -> anyhow::Result<(Duration, Duration, Duration)> {
            let t = Instant::now();
            let mut conn =
                TcpStream::connect_timeout(&(SERVER_ADDR, DEMO_PORT).into(), CONNECT_TIMEOUT)?;
            let connect = t.elapsed();
            conn.set_nodelay(true)?;
            conn.set_read_timeout(Some(Duration::from_secs(20)))?;
            let t = Instant::now();
            conn.write_all(b"ping")?;
            let mut four = [0u8; 4];
            conn.read_exact(&mut four)?;
            let echo = t.elapsed();
            // Now some bulk: send DEMO_BYTES and read the echo back at the same time.
            let t = Instant::now();
            let mut writer = conn.try_clone()?;
            let sender = thread::spawn(move || -> std::io::Result<()> {
                writer.write_all(&vec![b'x'; DEMO_BYTES])?;
                writer.shutdown(Shutdown::Write)
            });
            let mut back = Vec::new();
            conn.read_to_end(&mut back)?;
            sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
            anyhow::ensure!(
                back.len() == DEMO_BYTES,
                "echo was {} bytes, not {DEMO_BYTES}",
                back.len()
            );
            Ok((connect, echo, t.elapsed()))
        })?;
    let (connect, echo, bulk) =
        client.join().map_err(|_| anyhow::anyhow!("client thread panicked"))???;
    server.join().map_err(|_| anyhow::anyhow!("server thread panicked"))?.context("server")?;

    println!("TCP connect took {:.1} ms (one round trip: SYN out, SYN-ACK back)", ms(connect));
    println!("a 4-byte echo took {:.1} ms (one more round trip)", ms(echo));
    println!(
        "{} KiB there and back took {:.0} ms ({:.1} Mbit/s each way)",
        DEMO_BYTES / 1024,
        ms(bulk),
        DEMO_BYTES as f64 * 8.0 / bulk.as_secs_f64() / 1e6
    );
    let (up, down) = link.stop();
    println!("client -> server: {up}");
    println!("server -> client: {down}");
    println!("link removed; over loopback the same connect takes about 0.05 ms");
    Ok(ExitCode::SUCCESS)
}

/// The demo's bulk transfer: enough for TCP's window to grow a few times.
const DEMO_BYTES: usize = 512 * 1024;
/// A SYN lost to the 1% loss is resent after 1 s, then 3 s: allow for both.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How long `run` waits for SERVER-CMD to open a listening socket.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(10);

fn run(args: &LinkArgs, no_wait: bool, commands: &[String]) -> anyhow::Result<ExitCode> {
    let split = commands.iter().position(|a| a == "--");
    let (server_cmd, client_cmd) = match split {
        Some(i) => (&commands[..i], &commands[i + 1..]),
        None => anyhow::bail!("give both commands: run [OPTIONS] -- SERVER-CMD -- CLIENT-CMD"),
    };
    anyhow::ensure!(!server_cmd.is_empty() && !client_cmd.is_empty(), "a command is empty");
    let link = Link::start(args.config())?;
    eprintln!("netlab: {}; server side 198.18.0.1, client side 198.18.0.2", args.describe());

    let mut cmd = link.command(Side::Server, &server_cmd[0]);
    cmd.args(&server_cmd[1..]);
    let _server = link.spawn(cmd).context("starting the server command")?;
    if !no_wait {
        wait_for_listener(&link)?;
    }

    let mut cmd = link.command(Side::Client, &client_cmd[0]);
    cmd.args(&client_cmd[1..]);
    let status = link.spawn(cmd).context("starting the client command")?.wait()?;
    drop(_server);
    let (up, down) = link.stop();
    eprintln!("netlab: client -> server: {up}");
    eprintln!("netlab: server -> client: {down}");
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
}

/// Waits until something listens on the server side (a TCP socket in LISTEN
/// or any UDP socket), so the client does not race the server's start.
fn wait_for_listener(link: &Link) -> anyhow::Result<()> {
    let deadline = Instant::now() + SERVER_READY_TIMEOUT;
    while Instant::now() < deadline {
        let listening = link
            .run_on(Side::Server, || {
                // /proc/thread-self/net is the namespace of the thread reading it.
                let tcp = std::fs::read_to_string("/proc/thread-self/net/tcp").unwrap_or_default();
                let udp = std::fs::read_to_string("/proc/thread-self/net/udp").unwrap_or_default();
                tcp.lines().skip(1).any(|l| l.split_whitespace().nth(3) == Some("0A"))
                    || udp.lines().count() > 1
            })?
            .join()
            .map_err(|_| anyhow::anyhow!("probe thread panicked"))??;
        if listening {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("the server command opened no socket within {SERVER_READY_TIMEOUT:?}")
}

fn shell(args: &LinkArgs, server: Option<&str>) -> anyhow::Result<ExitCode> {
    let link = Link::start(args.config())?;
    let _server = match server {
        Some(s) => {
            let mut cmd = link.command(Side::Server, "sh");
            cmd.args(["-c", s]);
            let guard = link.spawn(cmd).context("starting the server command")?;
            wait_for_listener(&link)?;
            Some(guard)
        }
        None => None,
    };
    eprintln!("netlab: {}", args.describe());
    eprintln!("netlab: a shell on the client side (198.18.0.2); the server side is 198.18.0.1");
    eprintln!(
        "netlab: serve something there with: ip netns exec {} CMD; exit the shell to remove the link",
        link.namespace(Side::Server)
    );
    let sh = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into());
    // The shell must stay in our process group, the terminal's foreground
    // one, or it could not read the keyboard; so no ChildGuard here.
    CTRL_C_IS_THE_SHELLS.store(true, Ordering::Relaxed);
    let status = link.command(Side::Client, &sh).status();
    CTRL_C_IS_THE_SHELLS.store(false, Ordering::Relaxed);
    let status = status.context("starting the shell")?;
    drop(_server);
    let (up, down) = link.stop();
    eprintln!("netlab: client -> server: {up}");
    eprintln!("netlab: server -> client: {down}");
    Ok(ExitCode::from(status.code().unwrap_or(0).clamp(0, 255) as u8))
}
