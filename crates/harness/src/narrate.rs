//! Printing what a [`WireTap`] saw, for the lessons' demos. HTTP heads are
//! text, so the demos print them as text (with `\r\n` made visible) rather
//! than as a hexdump; bodies are short JSON or event-stream text. The feed
//! lessons (5 to 7) also print what each update cost with [`print_cost`].

use crate::tap::{Chunk, Direction, TapStats, WireTap};

/// Prints up to `max` chunks of connection `conn`, starting at chunk `skip`
/// of that connection: `>>` for bytes to the server, `<<` for bytes back.
pub fn print_exchange(tap: &WireTap, conn: usize, skip: usize, max: usize) {
    let chunks: Vec<Chunk> =
        tap.transcript().into_iter().filter(|c| c.conn == conn).skip(skip).take(max).collect();
    for c in chunks {
        let arrow = match c.direction {
            Direction::ToServer => ">>",
            Direction::ToClient => "<<",
        };
        println!("  {arrow} {} bytes", c.bytes.len());
        let text = String::from_utf8_lossy(&c.bytes);
        for line in text.split_inclusive('\n') {
            let shown = line.replace('\r', "\\r").replace('\n', "\\n");
            println!("  {arrow}   {shown}");
        }
    }
}

/// One line of cost per update: requests, connections and bytes each way,
/// divided by the updates the client received.
pub fn print_cost(label: &str, stats: TapStats, requests: u64, updates: u64) {
    let per = |n: u64| if updates == 0 { 0.0 } else { n as f64 / updates as f64 };
    println!(
        "{label}: {updates} updates, {requests} requests, {} connection(s), {} bytes to the server, {} bytes back",
        stats.connections, stats.to_server, stats.to_client
    );
    println!(
        "  per update: {:.2} requests, {:.0} bytes up, {:.0} bytes down",
        per(requests),
        per(stats.to_server),
        per(stats.to_client)
    );
}

/// Prints the first answer whose bytes contain `needle`, with the request
/// just before it on the same connection.
pub fn print_answer_containing(tap: &WireTap, needle: &str) {
    let chunks = tap.transcript();
    let found = chunks.iter().position(|c| {
        c.direction == Direction::ToClient && String::from_utf8_lossy(&c.bytes).contains(needle)
    });
    let Some(i) = found else {
        println!("  (no answer containing {needle:?} was captured)");
        return;
    };
    let conn = chunks[i].conn;
    let index_in_conn = chunks[..i].iter().filter(|c| c.conn == conn).count();
    print_exchange(tap, conn, index_in_conn.saturating_sub(1), 2);
}
