//! The command line of lesson 13. With no arguments it runs the demo; see
//! `cargo run -p tls -- --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::{Direction, WireTap};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tls::certs::Ca;
use tls::client::{self, Exchange};
use tls::{Config, DEFAULT_ADDR, Stats, wire};

/// How long the demo and `client` give one whole exchange on loopback.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(about = "Lesson 13: what TLS 1.3 adds to a TCP connection, with rustls")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Make a CA and a server certificate, write the CA certificate to a
    /// file, and serve HTTPS until Ctrl-C. Try it with
    /// `curl --cacert PATH https://localhost:7443/`.
    Serve {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Where to write the CA certificate (public; no key is written).
        #[arg(long, default_value_os_t = std::env::temp_dir().join("tls-lesson-ca.pem"))]
        ca_file: PathBuf,
    },
    /// Fetch `/` from a running server, trusting the CA in CA_FILE, and say
    /// what was negotiated.
    Client {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// The name to check the certificate against (and send as SNI).
        #[arg(long, default_value = "localhost")]
        name: String,
        /// The CA certificate `serve` wrote.
        #[arg(long, default_value_os_t = std::env::temp_dir().join("tls-lesson-ca.pem"))]
        ca_file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        None => {
            // The narration says what the logs would; keep them for warnings.
            harness::init_logging_at("warn");
            demo().await
        }
        Some(Command::Serve { addr, ca_file }) => {
            harness::init_logging();
            serve(addr, ca_file).await
        }
        Some(Command::Client { addr, name, ca_file }) => {
            harness::init_logging();
            let ca = CertificateDer::from_pem_file(&ca_file)
                .with_context(|| format!("reading the CA certificate {}", ca_file.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).context("the CA certificate does not parse")?;
            let config = client::client_config(Arc::new(roots));
            let exchange = client::fetch(addr, &name, config, EXCHANGE_LIMIT).await?;
            describe(&exchange);
            print!("{}", String::from_utf8_lossy(&exchange.answer));
            Ok(())
        }
    }
}

async fn serve(addr: SocketAddr, ca_file: PathBuf) -> anyhow::Result<()> {
    let ca = Ca::new("tls lesson throwaway CA")?;
    let cert = ca.server_cert()?;
    std::fs::write(&ca_file, ca.cert_pem())
        .with_context(|| format!("writing {}", ca_file.display()))?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    let path = ca_file.display();
    // The tests read the address and the CA path from these lines.
    println!("TLS server on {local}; Ctrl-C stops it");
    println!("CA certificate written to {path}");
    println!("try: curl --cacert {path} https://localhost:{}/", local.port());
    println!("     openssl s_client -connect {local} -CAfile {path}");
    let stats = Arc::new(Stats::default());
    tls::serve(
        listener,
        tls::server_config(&cert)?,
        Config::default(),
        stats,
        harness::ctrl_c_token(),
    )
    .await?;
    Ok(())
}

async fn demo() -> anyhow::Result<()> {
    println!("== 1. certificates made at start");
    let ca = Ca::new("tls lesson throwaway CA")?;
    let cert = ca.server_cert()?;
    println!(
        "a throwaway CA ({} bytes of DER) signed a certificate for {:?} ({} bytes);",
        ca.cert_der().len(),
        tls::certs::SERVER_NAMES,
        cert.cert.len()
    );
    println!("the client trusts that CA and nothing else");

    let listener = tokio::net::TcpListener::bind(harness::EPHEMERAL).await?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(Stats::default());
    let token = harness::CancellationToken::new();
    let server = tokio::spawn(tls::serve(
        listener,
        tls::server_config(&cert)?,
        Config::default(),
        Arc::clone(&stats),
        token.clone(),
    ));
    let tap = WireTap::start(addr)?;
    println!("server on {addr}, the wire tap in front of it on {}", tap.addr());
    let config = client::client_config(ca.roots());

    println!("\n== 2. a full handshake");
    let first = client::fetch(tap.addr(), "localhost", Arc::clone(&config), EXCHANGE_LIMIT).await?;
    describe(&first);
    narrate(&tap, 0, &first);

    println!("\n== 3. the same client again: resumed with the ticket from connection 1");
    let second = client::fetch(tap.addr(), "localhost", config, EXCHANGE_LIMIT).await?;
    describe(&second);
    narrate(&tap, 1, &second);

    println!("\n== 4. a client that does not trust this CA");
    let stranger = Ca::new("some other CA")?;
    match client::fetch(addr, "localhost", client::client_config(stranger.roots()), EXCHANGE_LIMIT)
        .await
    {
        Ok(_) => anyhow::bail!("a client that trusts another CA was let in"),
        Err(e) => println!("client: {e}\n(no request byte was sent; the server logs the alert)"),
    }

    // The server reads the client's alert a moment after the client gave
    // up; wait for it to count (bounded) before stopping it.
    let failures = || Stats::get(&stats.handshake_failures) == 1;
    harness::eventually(EXCHANGE_LIMIT, "the server to count the refused handshake", failures)
        .await;
    token.cancel();
    server.await.context("the server task")??;
    println!(
        "\nserver counted {} handshakes ({} resumed), {} failed",
        Stats::get(&stats.handshakes),
        Stats::get(&stats.resumed),
        Stats::get(&stats.handshake_failures)
    );
    println!("Next: `cargo run -p tls -- serve`, then curl and openssl as it prints.");
    Ok(())
}

/// What the client learnt from the handshake.
fn describe(x: &Exchange) {
    println!(
        "client: {:?}, {:?}, key exchange {}, ALPN {}, {:?} handshake in {:?}",
        x.version,
        x.suite,
        x.group.map_or("none".into(), |g| format!("{g:?}")),
        x.alpn.as_deref().unwrap_or("none"),
        x.kind,
        x.handshake_time
    );
    if x.kind == rustls::HandshakeKind::Resumed {
        // rustls hands back the certificates stored with the session.
        println!(
            "client: no certificate on the wire this time: the ticket stands for the one checked before"
        );
    } else {
        println!(
            "client: the server sent {} certificate(s), DER sizes {:?}; the CA's stays with the client",
            x.cert_sizes.len(),
            x.cert_sizes
        );
    }
    let first_line = x.answer.split(|&b| b == b'\n').next().unwrap_or_default();
    println!("client: answer starts {:?}", String::from_utf8_lossy(first_line).trim_end());
}

/// How many bytes of each direction the demo prints as a hexdump: the record
/// header and the start of the hello, enough to see the fields named below.
const HEAD: usize = 48;

/// What the tap saw on connection `conn`, decoded as far as it is readable.
fn narrate(tap: &WireTap, conn: usize, x: &Exchange) {
    let up = tap.bytes(conn, Direction::ToServer);
    let down = tap.bytes(conn, Direction::ToClient);
    let up_records = wire::records(&up);
    let down_records = wire::records(&down);
    println!(
        "on the wire, client to server ({} bytes); the first {HEAD} as they crossed:",
        up.len()
    );
    print!("{}", harness::hexdump(&up[..up.len().min(HEAD)]));
    for r in &up_records {
        print_record(r);
        if r.content_type == wire::HANDSHAKE
            && let Some(h) = wire::client_hello(r.body)
        {
            println!("      ClientHello: SNI {:?}, ALPN {:?}", h.server_name, h.alpn);
            let v: Vec<String> = h.versions.iter().map(|&v| wire::version_name(v)).collect();
            println!("      versions offered {v:?}");
            let s: Vec<String> = h.cipher_suites.iter().map(|&s| wire::suite_name(s)).collect();
            println!("      cipher suites {s:?}");
            let g: Vec<String> = h.groups.iter().map(|&g| wire::group_name(g)).collect();
            let k: Vec<String> = h.key_shares.iter().map(|&g| wire::group_name(g)).collect();
            println!("      groups {g:?}, key shares sent for {k:?}");
            println!("      offers a pre-shared key (a ticket): {}", h.offers_psk);
        }
    }
    println!("on the wire, server to client ({} bytes); the first {HEAD}:", down.len());
    print!("{}", harness::hexdump(&down[..down.len().min(HEAD)]));
    for r in &down_records {
        print_record(r);
        if r.content_type == wire::HANDSHAKE
            && let Some(h) = wire::server_hello(r.body)
        {
            println!(
                "      ServerHello: {}, {}, key share {}, accepted the ticket: {}",
                h.version.map_or("no supported_versions".into(), wire::version_name),
                wire::suite_name(h.cipher_suite),
                h.key_share.map_or("none".into(), wire::group_name),
                h.accepted_psk
            );
            println!("      everything after this is encrypted: only the sizes show");
        }
    }
    let answer_record = x.answer.len() + 1 + 16; // + inner content type + AEAD tag
    println!(
        "      (in order: the server's encrypted flight (EncryptedExtensions, Certificate,\n\
         \x20      CertificateVerify, Finished; on resumption no Certificate), its session tickets,\n\
         \x20      the answer ({answer_record} = {} bytes of HTTP + type + tag), close_notify (19))",
        x.answer.len()
    );
    // The client's encrypted records: its Finished, then the request. The
    // request needs no wait after the Finished, so what the client had to
    // wait for is what the server sent before the client's Finished.
    let mut encrypted =
        up_records.iter().filter(|r| r.content_type == wire::APPLICATION_DATA).map(|r| r.offset);
    let (Some(finished_at), Some(request_at)) = (encrypted.next(), encrypted.next()) else {
        println!("(could not find the client's Finished and request in the transcript)");
        return;
    };
    let (mut sent, mut received, mut turns, mut last) = (0usize, 0usize, 0, None);
    // Walk the chunks in the order the tap forwarded them, up to the one
    // that carries the client's Finished. (The session tickets the server
    // sends once it has that Finished may arrive before the request or
    // after: the client never waits for them, so they are not counted.)
    for chunk in tap.transcript().iter().filter(|c| c.conn == conn) {
        match chunk.direction {
            Direction::ToServer => {
                if sent + chunk.bytes.len() > finished_at {
                    break;
                }
                sent += chunk.bytes.len();
            }
            Direction::ToClient => {
                received += chunk.bytes.len();
                if last != Some(Direction::ToClient) {
                    turns += 1;
                }
            }
        }
        last = Some(chunk.direction);
    }
    println!(
        "before the first application byte: {request_at} bytes to the server, {received} back \
         that the client waited for, {turns} TLS round trip(s) (plus 1 for TCP's own handshake)"
    );
}

fn print_record(r: &wire::Record<'_>) {
    println!(
        "  record @{:>4}: {:02x} {:04x} {:>5}  {} ({} bytes with header)",
        r.offset,
        r.content_type,
        r.legacy_version,
        r.body.len(),
        r.type_name(),
        r.wire_len()
    );
}
