//! What an idle connection costs the server, in heap bytes: a global
//! allocator that counts the bytes in use, and clients that cost nothing on
//! the heap themselves (blocking std sockets that speak the handshake and one
//! message by hand, then never read), so the growth is the server's. Lesson
//! 9's memory test includes this file too (`#[path]`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use harness::ws::{Frame, SAMPLE_KEY, opcode, upgrade_request};

/// The system allocator, counting the bytes it has handed out and not yet
/// been given back. A test file that wants it declares
/// `#[global_allocator] static HEAP: Counting = Counting;`.
pub struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to `System` unchanged; only a counter is added.
// The workspace denies unsafe code; a global allocator cannot be written
// without it, and this one lives in a test only.
#[allow(unsafe_code, reason = "a counting wrapper around System, for a test")]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            IN_USE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

/// Heap bytes in use right now, by the whole test process.
pub fn in_use() -> isize {
    IN_USE.load(Ordering::Relaxed)
}

/// Opens `n` WebSocket connections to `addr` by hand on a plain thread and
/// sends `hello(i)` (a JSON text) on the `i`th: blocking std sockets, so the client
/// side allocates nothing that lasts. They never read after the handshake;
/// what the server sends them waits in the kernel's buffers, not on the
/// heap. Dropping the returned sockets closes them.
pub fn idle_clients(addr: SocketAddr, n: usize, hello: impl Fn(usize) -> String) -> Vec<TcpStream> {
    let request = upgrade_request(addr, "/ws", SAMPLE_KEY);
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("client {i}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("a read timeout");
        s.write_all(request.as_bytes()).expect("send the upgrade");
        // The 101's head, read byte by byte: the server sends nothing after
        // it until it gets `hello`, so this never eats into a frame.
        let mut head = Vec::with_capacity(256);
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            s.read_exact(&mut byte).unwrap_or_else(|e| panic!("client {i}'s 101: {e}"));
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        let hello = Frame::client(opcode::TEXT, hello(i).as_bytes(), [3, 1, 4, 1]).encode();
        s.write_all(&hello).expect("send hello");
        sockets.push(s);
    }
    sockets
}
