//! Each server runs in a process of its own, so the kernel's accounting of
//! CPU time and resident memory belongs to that server alone and not to the
//! subscribers, the wire tap and the publisher that share the bench process.
//!
//! The child is this very binary, started as `bench transports --serve
//! TECHNIQUE`: it binds `127.0.0.1:0`, prints the port on stdout, and serves
//! with the lesson's own code until its stdin closes. Closing stdin (or the
//! parent dying, which closes it too) is the stop signal, so no child can
//! outlive a benchmark run.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, Command};
use tokio_util::sync::CancellationToken;

use super::Technique;
use super::tally::{Usage, read_usage};
use crate::link::Net;

/// The event name the WebSocket subscribers subscribe to.
pub const EVENT: &str = "bench";

/// The child's side: serve `technique` on `ip` until stdin closes.
pub fn serve(technique: Technique, ip: IpAddr) -> anyhow::Result<()> {
    serve_until_stdin_closes_on(ip, move |listener, token| async move {
        match technique {
            Technique::ShortPolling => {
                short_polling::serve(listener, feed::Feed::default(), token).await
            }
            Technique::LongPolling => {
                let config = long_polling::Config::default();
                long_polling::serve(listener, feed::Feed::default(), config, token).await
            }
            Technique::Sse => {
                sse::serve(listener, feed::Feed::default(), sse::Config::default(), token).await
            }
            Technique::WebSocket => {
                let push = push_notifications::Push::new(push_notifications::Config::default());
                push.serve(listener, token).await
            }
        }
    })
}

/// Binds `127.0.0.1:0`, prints the port on stdout, and runs `server` on it
/// until stdin closes (the parent's stop signal). Every child process of
/// every report starts this way.
pub fn serve_until_stdin_closes<F, Fut>(server: F) -> anyhow::Result<()>
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = std::io::Result<()>>,
{
    serve_until_stdin_closes_on(IpAddr::V4(Ipv4Addr::LOCALHOST), server)
}

/// [`serve_until_stdin_closes`] on `ip`: the server side's 198.18.0.1 when
/// the process was started on that side of a link.
pub fn serve_until_stdin_closes_on<F, Fut>(ip: IpAddr, server: F) -> anyhow::Result<()>
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = std::io::Result<()>>,
{
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind((ip, 0)).await?;
        let mut out = std::io::stdout();
        writeln!(out, "{}", listener.local_addr()?.port())?;
        out.flush()?;
        let token = CancellationToken::new();
        let stop = token.clone();
        // A plain thread, because reading stdin blocks: EOF means "stop".
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            stop.cancel();
        });
        server(listener, token).await?;
        Ok(())
    })
}

/// The parent's handle on one server process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts a server process for `technique` and waits for its port: on
    /// loopback, or on the server side of `net`'s link.
    pub async fn start_on(technique: Technique, net: &Net) -> anyhow::Result<Self> {
        let Some(link) = net.link() else {
            return Self::spawn(&["transports", "--serve", technique.name()]).await;
        };
        // `ip netns exec` runs the program by path, so `/proc/self/exe`
        // would name `ip` itself by then: give it this binary's real path.
        let exe = std::env::current_exe().context("finding this binary")?;
        let exe = exe.to_str().context("this binary's path is not UTF-8")?;
        let mut cmd = link.command(netlab::Side::Server, exe);
        let ip = net.server_ip().to_string();
        cmd.args(["transports", "--serve", technique.name(), "--bind", &ip]);
        Self::spawn_command(Command::from(cmd), net.server_ip()).await
    }

    /// Starts this binary with `args` (which must make it serve on
    /// 127.0.0.1:0, print the port and serve until stdin closes, as
    /// [`serve`] does) and waits for its port. Other reports use it too.
    pub async fn spawn(args: &[&str]) -> anyhow::Result<Self> {
        // `/proc/self/exe` is this very program even if cargo has rebuilt
        // the file at its path since we started (another build in the same
        // target directory): the child is always the same code as its parent.
        let mut cmd = Command::new("/proc/self/exe");
        cmd.args(args);
        Self::spawn_command(cmd, IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// Starts `cmd`, a server process that binds `ip` and prints its port
    /// (as [`serve`] does), and waits for the port.
    async fn spawn_command(mut cmd: Command, ip: IpAddr) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the server process")?;
        let pid = child.id().context("the child has a pid until it is waited for")?;
        let stdout = child.stdout.take().context("stdout was piped")?;
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
            .await
            .context("the server process did not print its port within 10 s")??;
        let port: u16 = line.trim().parse().with_context(|| format!("bad port line {line:?}"))?;
        let stdin = child.stdin.take();
        Ok(Self { child, stdin, pid, addr: SocketAddr::new(ip, port) })
    }

    /// CPU time and memory so far.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        Ok(read_usage(self.pid)?)
    }

    /// Closes its stdin and waits for it to finish (killing it after 10 s).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("the server process ended with {status}");
                }
            }
            Err(_) => {
                eprintln!("  server process did not stop within 10 s; killing it");
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}
