//! The demo's claim, checked on the real binary: started as a child process,
//! the threaded server grows a thread per connection and the event loops stay
//! on one thread.

// It counts threads in /proc/<pid>/status, which only Linux has: compiled only there.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::ChildServer;
use harness::eventually_blocking;
use threads_vs_epoll::Flavour;

const CONNECTIONS: u64 = 50;

#[test]
fn threads_grow_with_connections_only_for_the_threaded_server() {
    for flavour in Flavour::ALL {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_threads-vs-epoll"));
        cmd.args(["serve", "--flavour", flavour.name(), "--addr", "127.0.0.1:0"]);
        let server = ChildServer::spawn(cmd, Duration::from_secs(10)).expect("spawn the server");
        let idle = server.status().expect("read /proc").threads;
        let mut held = Vec::new();
        for i in 0..CONNECTIONS {
            let mut s = TcpStream::connect(server.addr()).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            s.write_all(&[i as u8]).expect("send");
            let mut b = [0u8; 1];
            s.read_exact(&mut b).expect("echo");
            held.push(s);
        }
        match flavour {
            Flavour::Threaded => {
                eventually_blocking(Duration::from_secs(10), "one thread per connection", || {
                    server.status().is_ok_and(|s| s.threads == idle + CONNECTIONS)
                })
            }
            Flavour::Evented | Flavour::Tokio => {
                assert_eq!(idle, 1, "{flavour:?} idles on one thread");
                assert_eq!(server.status().expect("read /proc").threads, 1, "{flavour:?}");
            }
        }
    }
}
