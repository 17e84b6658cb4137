//! Nagle's algorithm meeting delayed ACKs, through the link (chapter 12's
//! story). A client sends each request in two small writes, a head and a
//! body, then reads the answer: write, write, read. With Nagle's algorithm on
//! (the default) the body may not leave while the head is unacknowledged; the
//! server, which has nothing to say until it has the whole request, delays
//! its ACK hoping to carry it on an answer. Each waits for the other until
//! the delayed-ACK timer fires. `TCP_NODELAY` on the client ends the wait.
//!
//! Needs root, like every link test: `cargo test -p netlab -- --ignored`.

// Network namespaces and TUN devices are Linux's: compiled only there.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use netlab::{Link, LinkConfig, SERVER_ADDR, Side};

/// The request's head and body, each its own write.
const HEAD: &[u8] = b"PUT /k HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
const BODY: &[u8] = b"hello";
const ANSWER: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
/// Exchanges before measuring: a new connection ACKs at once for a while
/// (Linux's quick-ACK mode), and only then starts delaying.
const WARM_UP: usize = 5;
/// Exchanges measured; the median is compared.
const MEASURED: usize = 15;
/// Every read gives up after this, so a broken link fails the test.
const STUCK: Duration = Duration::from_secs(10);

/// A server on the server side that reads a whole request (head and body)
/// and answers it, for as many requests as come.
fn server(link: &Link) -> SocketAddr {
    let listener = link
        .on(Side::Server, || TcpListener::bind((SERVER_ADDR, 0)))
        .expect("bind on the server side");
    let addr = listener.local_addr().expect("bound");
    thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else { return };
        conn.set_read_timeout(Some(STUCK)).expect("timeout");
        // The server sends its answer in one write, as a careful server does.
        conn.set_nodelay(true).expect("nodelay");
        let mut request = vec![0u8; HEAD.len() + BODY.len()];
        while conn.read_exact(&mut request).is_ok() {
            if conn.write_all(ANSWER).is_err() {
                return;
            }
        }
    });
    addr
}

/// The median time of a write-write-read exchange through a link of `rtt`,
/// with the client's `TCP_NODELAY` set or not.
fn exchange(rtt: Duration, nodelay: bool) -> Duration {
    let link = Link::start(LinkConfig::symmetric(rtt, 0.0, None)).expect("link");
    let addr = server(&link);
    link.run_on(Side::Client, move || {
        let mut c = TcpStream::connect_timeout(&addr, STUCK).expect("connect across the link");
        c.set_nodelay(nodelay).expect("nodelay");
        c.set_read_timeout(Some(STUCK)).expect("timeout");
        let mut answer = vec![0u8; ANSWER.len()];
        let mut times = Vec::with_capacity(MEASURED);
        for i in 0..WARM_UP + MEASURED {
            let t = Instant::now();
            c.write_all(HEAD).expect("head");
            c.write_all(BODY).expect("body");
            c.read_exact(&mut answer).expect("answer");
            if i >= WARM_UP {
                times.push(t.elapsed());
            }
        }
        times.sort();
        times[times.len() / 2]
    })
    .expect("thread in the client namespace")
    .join()
    .expect("client thread")
    .expect("setns")
}

#[test]
#[ignore = "needs root for network namespaces and TUN; .ci/run runs them"]
fn nagle_waits_for_a_delayed_ack_and_nodelay_does_not() {
    for rtt_ms in [0, 20] {
        let rtt = Duration::from_millis(rtt_ms);
        let nagle = exchange(rtt, false);
        let nodelay = exchange(rtt, true);
        eprintln!(
            "RTT {rtt:?}: write-write-read median {nagle:?} with Nagle, {nodelay:?} with TCP_NODELAY"
        );
        // Without Nagle: one round trip (the forwarder adds well under a
        // millisecond; the 0 ms link's exchange measured 0.06 ms).
        assert!(
            nodelay >= rtt && nodelay <= rtt + rtt / 10 + SLACK,
            "TCP_NODELAY: {nodelay:?}, not one RTT of {rtt:?}"
        );
        // With it: the head's trip, the server's delayed ACK (40 ms at least
        // on Linux, 200 ms at most), the ACK's trip back, then the body and
        // the answer: two round trips plus the timer.
        assert!(
            nagle >= 2 * rtt + DELAYED_ACK_MIN && nagle <= 2 * rtt + DELAYED_ACK_MAX + SLACK,
            "Nagle: {nagle:?}, not two RTTs of {rtt:?} plus a delayed ACK"
        );
    }
}

/// Linux delays an ACK by at least 40 ms (TCP_DELACK_MIN; measured 44 ms
/// here, the timer's tick) and at most 200 ms (TCP_DELACK_MAX). The test
/// asks for a little less than the minimum, so a timer that rounds down
/// still passes.
const DELAYED_ACK_MIN: Duration = Duration::from_millis(35);
const DELAYED_ACK_MAX: Duration = Duration::from_millis(200);
/// What scheduling may add to a median on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(3);
