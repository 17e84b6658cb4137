//! One subscriber per technique, each the lesson's own client, recording the
//! id of every update it is handed and the instant it was handed over.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use push_notifications::client::Event as PushEvent;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Technique;
use super::child::EVENT;

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct Received {
    /// Each update's id and when the client handed it over, in order.
    pub arrivals: Vec<(u64, Instant)>,
    /// Requests the client says it made (a stream or a WebSocket is one).
    pub requests: u64,
    /// What the client reported going wrong along the way, if anything.
    pub trouble: Vec<String>,
}

/// Follows the server at `addr` (the wire tap) until `want` updates arrived
/// or `token` is cancelled.
pub async fn subscriber(
    technique: Technique,
    addr: SocketAddr,
    want: u64,
    poll_interval: Duration,
    token: CancellationToken,
) -> anyhow::Result<Received> {
    let mut got = Received::default();
    let arrivals = &mut got.arrivals;
    match technique {
        Technique::ShortPolling => {
            // With ETag, as the lesson recommends: an idle poll is a 304.
            let record = |u: &feed::Update| arrivals.push((u.id, Instant::now()));
            let r =
                short_polling::follow(addr, 0, poll_interval, true, want, token, record).await?;
            got.requests = r.requests;
            if r.missed > 0 {
                got.trouble.push(format!("server said {} updates were missed", r.missed));
            }
        }
        Technique::LongPolling => {
            let record = |u: &feed::Update| arrivals.push((u.id, Instant::now()));
            let hold = long_polling::HOLD;
            let r = long_polling::follow(addr, 0, want, hold, token, record).await?;
            got.requests = r.requests;
            if r.missed > 0 {
                got.trouble.push(format!("server said {} updates were missed", r.missed));
            }
        }
        Technique::Sse => {
            let mut bad_ids = 0u64;
            let record = |ev: &sse::parser::Event| {
                if ev.event == "update" || ev.event == "text" {
                    match ev.id.parse() {
                        Ok(id) => arrivals.push((id, Instant::now())),
                        Err(_) => bad_ids += 1,
                    }
                }
            };
            let config = sse::ClientConfig::default();
            let r = sse::follow(addr, want, config, token, record).await?;
            // One GET /events per connection.
            got.requests = r.connections;
            if bad_ids > 0 {
                got.trouble.push(format!("{bad_ids} events without a numeric id"));
            }
        }
        Technique::WebSocket => {
            let (tx, mut rx) = mpsc::channel(256);
            let stop = token.child_token();
            let url = format!("ws://{addr}/ws");
            let client = tokio::spawn(push_notifications::client::follow(
                url,
                vec![EVENT.to_owned()],
                None,
                tx,
                stop.clone(),
            ));
            while (arrivals.len() as u64) < want {
                let event = tokio::select! {
                    () = token.cancelled() => break,
                    e = rx.recv() => match e { Some(e) => e, None => break },
                };
                match event {
                    PushEvent::Notification(n) => arrivals.push((n.id, Instant::now())),
                    // One upgrade request per connection.
                    PushEvent::Connected { .. } => got.requests += 1,
                    PushEvent::Gap { since, oldest } => {
                        got.trouble.push(format!("gap: since {since}, oldest {oldest}"));
                    }
                    PushEvent::Disconnected { why, .. } => got.trouble.push(why),
                }
            }
            stop.cancel();
            client.await.context("the WebSocket client task")?;
        }
    }
    Ok(got)
}
