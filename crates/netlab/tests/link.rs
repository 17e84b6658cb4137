//! The link itself, over real namespaces and TUN devices. These need root, so
//! plain `cargo test` lists them as ignored (with the reason) instead of
//! passing them silently; `.ci/run` runs them as root with
//! `cargo test -p netlab -- --ignored`, where they must pass.

// Network namespaces and TUN devices are Linux's: compiled only there.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use harness::{eventually_blocking, within_blocking};
use netlab::{DirectionConfig, Link, LinkConfig, SERVER_ADDR, Side};

/// Starts an echo server on the server side and returns its address. The
/// listener is bound on a thread inside the namespace and served from an
/// ordinary thread: a socket stays in the namespace it was made in.
fn echo_server(link: &Link) -> SocketAddr {
    let listener = link
        .on(Side::Server, || TcpListener::bind((SERVER_ADDR, 0)))
        .expect("bind on the server side");
    let addr = listener.local_addr().expect("bound");
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            thread::spawn(move || {
                let mut reader = conn.try_clone().expect("clone");
                let _ = std::io::copy(&mut reader, &mut conn);
            });
        }
    });
    addr
}

/// The round-trip tests measure time to a tenth of a millisecond; the bulk
/// tests keep both cores busy forwarding. On a 2-core machine the two must not
/// run at once, so each takes this lock (the timing tests one at a time too).
static BUSY: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    BUSY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Connect time and a small echo's round trip, median of several, against
/// the configured RTT.
fn check_rtt(rtt_ms: u64) {
    let _alone = exclusive();
    let rtt = Duration::from_millis(rtt_ms);
    let link = Link::start(LinkConfig::symmetric(rtt, 0.0, None)).expect("link");
    let addr = echo_server(&link);
    let (connect, echo) = link
        .run_on(Side::Client, move || {
            let mut connects = Vec::new();
            let mut echoes = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                    .expect("connect across the link");
                connects.push(t.elapsed());
                c.set_nodelay(true).expect("nodelay");
                c.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                let mut buf = [0u8; 32];
                for _ in 0..3 {
                    let t = Instant::now();
                    c.write_all(&[7; 32]).expect("write");
                    c.read_exact(&mut buf).expect("echo");
                    echoes.push(t.elapsed());
                }
                c.shutdown(Shutdown::Both).ok();
            }
            (median(connects), median(echoes))
        })
        .expect("thread in the client namespace")
        .join()
        .expect("client thread")
        .expect("setns");
    drop(link);
    eprintln!("RTT {rtt:?}: connect {connect:?}, echo {echo:?}");
    for (what, got) in [("connect", connect), ("echo", echo)] {
        assert!(
            got >= rtt && got <= rtt + rtt / 10,
            "{what} took {got:?}, not within 10% of the configured {rtt:?}"
        );
    }
}

#[test]
#[ignore = "needs root for network namespaces and TUN; .ci/run runs them"]
fn connect_and_echo_take_one_rtt_at_10ms() {
    check_rtt(10);
}

#[test]
#[ignore = "needs root for network namespaces and TUN; .ci/run runs them"]
fn connect_and_echo_take_one_rtt_at_200ms() {
    check_rtt(200);
}

#[test]
#[ignore = "needs root for network namespaces and TUN; .ci/run runs them"]
fn connect_and_echo_take_one_rtt_at_20ms() {
    check_rtt(20);
}

#[test]
#[ignore = "needs root for network namespaces and TUN; .ci/run runs them"]
fn connect_and_echo_take_one_rtt_at_50ms() {
    check_rtt(50);
}

#[test]
#[ignore = "needs root for network namespaces and TUN; .ci/run runs them"]
fn connect_and_echo_take_one_rtt_at_100ms() {
    check_rtt(100);
}

#[test]
#[ignore = "needs root for network namespaces and TUN; .ci/run runs them"]
fn loss_is_what_was_configured_over_10000_datagrams() {
    const N: u64 = 10_000;
    const LOSS: f64 = 0.05;
    let _alone = exclusive();
    let config = LinkConfig {
        up: DirectionConfig { loss: LOSS, seed: 11, ..Default::default() },
        down: DirectionConfig::default(),
        mtu: netlab::DEFAULT_MTU,
        pcap: None,
    };
    let link = Link::start(config).expect("link");
    let server = link.on(Side::Server, || UdpSocket::bind((SERVER_ADDR, 0))).expect("bind");
    let to = server.local_addr().expect("bound");
    let client = link.on(Side::Client, || UdpSocket::bind(("198.18.0.2", 0))).expect("bind");
    server.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let received = Arc::new(AtomicU64::new(0));
    let counted = received.clone();
    let receiver = thread::spawn(move || {
        let mut buf = [0u8; 64];
        while server.recv(&mut buf).is_ok() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    // Send in batches, and let each batch cross and be read before the next,
    // so neither the kernel's TUN queue (500 packets) nor the server socket's
    // receive buffer ever overflows: every packet that goes missing is then
    // one the loss model chose.
    const BATCH: u64 = 50;
    for batch in 0..N / BATCH {
        for i in 0..BATCH {
            client.send_to(&(batch * BATCH + i).to_be_bytes(), to).expect("send");
        }
        let want = (batch + 1) * BATCH;
        eventually_blocking(Duration::from_secs(5), "the batch crosses and is read", || {
            let up = link.up();
            up.arrived >= want
                && up.sent + up.lost >= want
                && received.load(Ordering::Relaxed) == up.sent
        });
    }
    within_blocking(Duration::from_secs(5), "the receiver stops", move || {
        receiver.join().expect("receiver")
    });
    let received = received.load(Ordering::Relaxed);
    let up = link.stop().0;
    eprintln!("{up:?}, received {received}");
    assert_eq!(up.arrived, N, "every datagram reached the forwarder");
    assert_eq!(up.sent, received, "every datagram the link sent was received");
    assert_eq!(up.lost + up.sent, N);
    // Binomial(10,000, 5%): mean 500, standard deviation 21.8; 5 of them.
    assert!((391..=609).contains(&up.lost), "lost {} of {N} at {LOSS}", up.lost);
}

/// Whether `pid` is one of the `sleep` commands the tests run (and not, say,
/// an `ip netns exec sysctl` of a link still being built).
fn is_sleep(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
}

fn alive(pid: u32) -> bool {
    // A zombie (state Z) has finished; only its parent has yet to reap it.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|s| s.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

#[test]
#[ignore = "needs root for network namespaces and TUN; .ci/run runs them"]
fn nothing_is_left_after_a_link_is_dropped() {
    let link =
        Link::start(LinkConfig::symmetric(Duration::from_millis(10), 0.0, None)).expect("link");
    let names = [link.namespace(Side::Server).to_owned(), link.namespace(Side::Client).to_owned()];
    assert!(netlab::our_namespaces().contains(&names[0]));
    let mut cmd = link.command(Side::Server, "sleep");
    cmd.arg("600");
    let child = link.spawn(cmd).expect("spawn");
    let pid = child.id();
    // `sh -c` with a grandchild: the group kill takes both.
    let mut cmd = link.command(Side::Client, "sh");
    cmd.args(["-c", "sleep 600 & wait"]);
    let _shell = link.spawn(cmd).expect("spawn");
    eventually_blocking(Duration::from_secs(5), "both sides have their processes", || {
        netlab::pids_in(&names[1]).len() >= 2 && !netlab::pids_in(&names[0]).is_empty()
    });
    let grandchildren = netlab::pids_in(&names[1]);
    drop(link);
    drop(child);
    drop(_shell);
    let now = netlab::our_namespaces();
    assert!(!names.iter().any(|n| now.contains(n)), "namespaces left: {now:?}");
    assert!(!alive(pid), "the server-side child {pid} is still running");
    for p in grandchildren {
        assert!(!alive(p as u32), "client-side process {p} is still running");
    }
    // The TUN devices lived only inside the namespaces, and no device of ours
    // ever appears in the root namespace.
    let links = Command::new("ip").args(["-o", "link"]).output().expect("ip link");
    assert!(!String::from_utf8_lossy(&links.stdout).contains(netlab::TUN_NAME));
}

#[test]
#[ignore = "needs root for network namespaces and TUN; .ci/run runs them"]
fn a_killed_run_is_swept_by_the_next() {
    let mut run = Command::new(env!("CARGO_BIN_EXE_netlab"))
        .args(["run", "--no-wait", "--rtt", "10ms", "--", "sleep", "600", "--", "sleep", "600"])
        .spawn()
        .expect("start netlab run");
    let prefix = format!("{}{}-", netlab::NAMESPACE_PREFIX, run.id());
    let theirs = || -> Vec<String> {
        netlab::our_namespaces().into_iter().filter(|n| n.starts_with(&prefix)).collect()
    };
    eventually_blocking(Duration::from_secs(10), "the run's link and processes are up", || {
        let names = theirs();
        names.len() == 2 && names.iter().all(|n| netlab::pids_in(n).iter().any(|&p| is_sleep(p)))
    });
    let left: Vec<i32> = theirs().iter().flat_map(|n| netlab::pids_in(n)).collect();
    // SIGKILL: no handler, no Drop, nothing gets to clean up.
    run.kill().expect("kill");
    run.wait().expect("reap");
    // Its namespaces are still there now, unless a test running beside this
    // one has already started a link, and so swept them: either way, after a
    // sweep they must be gone.
    let swept = netlab::sweep_stale();
    assert!(theirs().is_empty(), "still there after the sweep: {:?} (swept {swept:?})", theirs());
    eventually_blocking(Duration::from_secs(5), "the run's processes are gone", || {
        left.iter().all(|&p| !alive(p as u32))
    });
    // And a new link builds fine beside whatever the sweep found.
    let link = Link::start(LinkConfig::symmetric(Duration::ZERO, 0.0, None)).expect("link");
    let name = link.namespace(Side::Server).to_owned();
    drop(link);
    assert!(!netlab::our_namespaces().contains(&name));
}

#[test]
#[ignore = "needs root for network namespaces and TUN; .ci/run runs them"]
fn the_capture_shows_the_handshake_to_tshark() {
    let dir = std::env::temp_dir().join(format!("netlab-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("handshake.pcap");
    let mut config = LinkConfig::symmetric(Duration::from_millis(10), 0.0, None);
    config.pcap = Some(path.clone());
    let link = Link::start(config).expect("link");
    let addr = echo_server(&link);
    link.run_on(Side::Client, move || {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        c.write_all(b"hello").expect("write");
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).expect("echo");
    })
    .expect("thread")
    .join()
    .expect("client")
    .expect("setns");
    drop(link);

    let fields = tshark(&path, "tcp.flags.syn == 1");
    let lines: Vec<&str> = fields.lines().collect();
    assert_eq!(lines.len(), 2, "one SYN and one SYN-ACK, got:\n{fields}");
    assert!(lines[0].starts_with("198.18.0.2\t198.18.0.1\t0"), "SYN from the client: {}", lines[0]);
    assert!(lines[1].starts_with("198.18.0.1\t198.18.0.2\t1"), "SYN-ACK back: {}", lines[1]);
    let data = tshark(&path, "tcp.len == 5");
    assert_eq!(data.lines().count(), 2, "hello out and its echo back:\n{data}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Source, destination and ACK flag of each packet tshark's filter keeps.
fn tshark(path: &Path, filter: &str) -> String {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-Y", filter, "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "tcp.flags.ack"])
        .output()
        .expect("tshark runs (Debian's tshark package; .ci/run installs it)");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends `bytes` one way from the client to a sink on the server side and
/// returns how long it took, from connect to the sink's last read.
fn upload(link: &Link, bytes: usize) -> Duration {
    let listener = link.on(Side::Server, || TcpListener::bind((SERVER_ADDR, 0))).expect("bind");
    let addr = listener.local_addr().expect("bound");
    let sink = thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let n = std::io::copy(&mut conn, &mut std::io::sink()).expect("read");
        (n, Instant::now())
    });
    let start = link
        .run_on(Side::Client, move || {
            let start = Instant::now();
            let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
            c.write_all(&vec![0u8; bytes]).expect("write");
            start
        })
        .expect("thread")
        .join()
        .expect("client")
        .expect("setns");
    let (n, end) = within_blocking(Duration::from_secs(30), "the upload ends", move || {
        sink.join().expect("sink")
    });
    assert_eq!(n as usize, bytes);
    end - start
}

#[test]
#[ignore = "needs root for network namespaces and TUN; .ci/run runs them"]
fn a_rate_limited_link_moves_data_at_its_rate() {
    const RATE: u64 = 20_000_000;
    const BYTES: usize = 2_000_000;
    let _alone = exclusive();
    let link = Link::start(LinkConfig::symmetric(Duration::from_millis(10), 0.0, Some(RATE)))
        .expect("link");
    let took = upload(&link, BYTES);
    let up = link.stop().0;
    // The wire carries headers too (about 52 bytes per 1448 of payload).
    let wire = up.bytes as f64 * 8.0 / RATE as f64;
    let goodput = BYTES as f64 * 8.0 / took.as_secs_f64();
    eprintln!("{BYTES} bytes at 20 Mbit/s took {took:?}: {:.1} Mbit/s; {up}", goodput / 1e6);
    assert!(took.as_secs_f64() >= wire, "faster than the wire allows: {took:?} < {wire} s");
    // Slow start and the handshake cost a few round trips on top.
    assert!(took.as_secs_f64() < wire * 1.3 + 0.1, "{took:?}, expected about {wire} s");
}

#[test]
#[ignore = "needs root for network namespaces and TUN; .ci/run runs them"]
fn ctrl_c_removes_the_link_and_its_processes() {
    let run = Command::new(env!("CARGO_BIN_EXE_netlab"))
        .args(["run", "--no-wait", "--", "sleep", "600", "--", "sleep", "600"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start netlab run");
    let prefix = format!("{}{}-", netlab::NAMESPACE_PREFIX, run.id());
    let theirs = || -> Vec<String> {
        netlab::our_namespaces().into_iter().filter(|n| n.starts_with(&prefix)).collect()
    };
    eventually_blocking(Duration::from_secs(10), "the run's link and processes are up", || {
        let names = theirs();
        names.len() == 2 && names.iter().all(|n| netlab::pids_in(n).iter().any(|&p| is_sleep(p)))
    });
    let left: Vec<i32> = theirs().iter().flat_map(|n| netlab::pids_in(n)).collect();
    let pid = rustix::process::Pid::from_raw(run.id() as i32).expect("a child has a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let out = within_blocking(Duration::from_secs(10), "netlab exits", move || {
        run.wait_with_output().expect("wait")
    });
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("link removed"));
    assert!(theirs().is_empty(), "namespaces left after Ctrl-C: {:?}", theirs());
    eventually_blocking(Duration::from_secs(5), "the run's processes are gone", || {
        left.iter().all(|&p| !alive(p as u32))
    });
}
