//! The terminal client: lines in, the room out, and it comes back by itself
//! when the server goes away.
//!
//! It answers the server's pings without any code of ours: tungstenite
//! queues a pong for every ping it reads, and we are always reading. What we
//! do write is the reconnect loop, with exponential backoff so that a
//! restarted server is not hit by every client at the same instant, again and
//! again, while it is still starting.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::{ClientMsg, LOBBY, ServerMsg};

/// First wait before reconnecting.
pub const BACKOFF_START: Duration = Duration::from_millis(100);

/// Longest wait between reconnect attempts: long enough not to hammer a
/// server that is down, short enough that a user does not give up first.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Doubling delays between reconnect attempts, reset after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    start: Duration,
}

impl Backoff {
    /// Starts at `start`, doubles up to `max`.
    pub fn new(start: Duration, max: Duration) -> Self {
        Self { next: start, max, start }
    }

    /// The wait before the next attempt (and doubles the one after).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Called after a successful connection.
    pub fn reset(&mut self) {
        self.next = self.start;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(BACKOFF_START, BACKOFF_MAX)
    }
}

/// What a typed line means: `/join ROOM`, `/leave`, `/who`, or a message.
pub fn parse_line(line: &str) -> Option<ClientMsg> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    Some(match line.split_once(' ').unwrap_or((line, "")) {
        ("/join", room) => ClientMsg::Join(room.trim().to_owned()),
        ("/leave", _) => ClientMsg::Leave,
        ("/who", _) => ClientMsg::Who,
        _ => ClientMsg::Message(line.to_owned()),
    })
}

/// One server message as a line for the terminal.
pub fn render(text: &str) -> String {
    match serde_json::from_str::<ServerMsg>(text) {
        Ok(ServerMsg::Message { username, message, room }) => {
            format!("[{room}] {username}: {message}")
        }
        Ok(ServerMsg::Info { message }) => format!("* {message}"),
        Ok(ServerMsg::Error { message }) => format!("! {message}"),
        Ok(ServerMsg::Who { room, users, online }) => {
            format!("* in {room}: {} (online: {})", users.join(", "), online.join(", "))
        }
        Err(_) => format!("? {text}"),
    }
}

/// Runs the client until `input` ends or `stop` is cancelled. Every line the
/// user should see goes to `output`. On a lost connection it waits
/// ([`Backoff`]), reconnects, sends the username again and rejoins the room
/// it was in. Lines typed while disconnected wait in `input`'s channel.
pub async fn run(
    url: &str,
    name: &str,
    mut input: mpsc::Receiver<String>,
    output: mpsc::Sender<String>,
    mut backoff: Backoff,
    stop: CancellationToken,
) {
    let mut room = LOBBY.to_owned();
    loop {
        let ws = tokio::select! {
            () = stop.cancelled() => return,
            r = tokio_tungstenite::connect_async(url) => r,
        };
        let mut ws = match ws {
            Ok((ws, _)) => ws,
            Err(e) => {
                let wait = backoff.next_delay();
                let _ = output.send(format!("! cannot connect ({e}); retrying in {wait:?}")).await;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        backoff.reset();
        let _ = output.send(format!("* connected to {url}")).await;
        let mut hello = vec![ClientMsg::Username(name.to_owned())];
        if room != LOBBY {
            hello.push(ClientMsg::Join(room.clone()));
        }
        for m in hello {
            let json = serde_json::to_string(&m).expect("our own enum serializes");
            if ws.send(Message::text(json)).await.is_err() {
                break;
            }
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    let _ = ws.close(None).await;
                    return;
                }
                line = input.recv() => {
                    let Some(line) = line else {
                        // stdin ended: say goodbye properly (close 1000).
                        let _ = ws.close(None).await;
                        return;
                    };
                    let Some(msg) = parse_line(&line) else { continue };
                    match &msg {
                        ClientMsg::Join(r) => room = r.trim().to_owned(),
                        ClientMsg::Leave => room = LOBBY.to_owned(),
                        _ => {}
                    }
                    let json = serde_json::to_string(&msg).expect("our own enum serializes");
                    if ws.send(Message::text(json)).await.is_err() {
                        break;
                    }
                }
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(t))) => { let _ = output.send(render(t.as_str())).await; }
                    Some(Ok(Message::Close(f))) => {
                        let why = f.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                        let _ = output.send(format!("! server closed the connection: {why}")).await;
                    }
                    // Pings are answered inside tungstenite while we read.
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
        }
        let wait = backoff.next_delay();
        let _ = output.send(format!("! disconnected; reconnecting in {wait:?}")).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
