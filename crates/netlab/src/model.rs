//! What the link does to one packet, as plain arithmetic: no sockets, no
//! threads, no clock of its own. The forwarder in `lib.rs` asks [`Shaper`]
//! "this packet of this size arrived at this instant: drop it, or when does it
//! come out?", and everything here can be tested without root.

use std::time::{Duration, Instant};

/// How one direction of the link behaves. `LinkConfig` in `lib.rs` holds two
/// of these, one per direction, so a link can be asymmetric (a slow uplink, a
/// lossy downlink) the way real access links are.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectionConfig {
    /// One-way delay added to every packet: half the round trip when both
    /// directions are alike.
    pub delay: Duration,
    /// Each packet's delay varies uniformly in `delay ± jitter`, but a packet
    /// never leaves before the one ahead of it (see [`Shaper::admit`]).
    pub jitter: Duration,
    /// Independent random loss, 0.0 to 1.0.
    pub loss: f64,
    /// Bursty loss instead of (on top of) independent loss; `None` for none.
    pub burst: Option<GilbertElliott>,
    /// Bits per second the link serializes at; `None` for as fast as the
    /// forwarder can go.
    pub rate_bps: Option<u64>,
    /// Bytes that may wait for the wire when `rate_bps` is set; a packet that
    /// would push the queue past this is dropped (tail drop). A large queue on
    /// a slow link is bufferbloat.
    pub queue_bytes: usize,
    /// Seed of this direction's random numbers: the same seed and the same
    /// packets give the same losses, so a run can be repeated.
    pub seed: u64,
}

/// A queue of 64 packets of 1500 bytes: about what a home router holds, and
/// enough for TCP to fill a 10 Mbit/s link without drops at 100 ms RTT only
/// just. Chapter 12's bufferbloat exercise makes it much larger on purpose.
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1500;

impl Default for DirectionConfig {
    fn default() -> Self {
        DirectionConfig {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            rate_bps: None,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            seed: 1,
        }
    }
}

/// The two-state bursty loss model of Gilbert (1960) and Elliott (1963). The
/// link is either Good or Bad; before each packet it may switch state, then
/// the packet is lost with the loss probability of the state it is in. With
/// `loss_in_bad` near 1 and a small `bad_to_good`, losses come in runs, the
/// way a fading radio link or an overflowing queue upstream loses them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// P(Good -> Bad) per packet.
    pub good_to_bad: f64,
    /// P(Bad -> Good) per packet. The mean burst length is 1 / `bad_to_good`.
    pub bad_to_good: f64,
    /// Loss probability while Good (often 0).
    pub loss_in_good: f64,
    /// Loss probability while Bad (often 1).
    pub loss_in_bad: f64,
}

impl GilbertElliott {
    /// The long-run loss rate: the share of time in Bad is
    /// good_to_bad / (good_to_bad + bad_to_good).
    pub fn mean_loss(&self) -> f64 {
        let bad = self.good_to_bad / (self.good_to_bad + self.bad_to_good);
        bad * self.loss_in_bad + (1.0 - bad) * self.loss_in_good
    }
}

/// A small, fast, seedable random number generator (SplitMix64). Written out
/// here rather than taken from a crate so a seed means the same losses on
/// every machine and with every version of every dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1): the top 53 bits, as many as an f64 holds exactly.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }
}

/// Why a packet did not make it across.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The loss model (random or bursty) chose it.
    Loss,
    /// The queue in front of the rate limiter was full (tail drop).
    Queue,
}

/// The serialization arithmetic of a rate-limited link. The wire carries one
/// packet at a time: a packet of `len` bytes occupies it for `len * 8 / rate`
/// seconds, and a packet that arrives while the wire is busy waits. We never
/// keep the waiting packets here; `busy_until` (when the wire frees up) says
/// everything: the bytes still waiting are the time left times the rate.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate_bps: u64,
    queue_bytes: usize,
    busy_until: Option<Instant>,
}

impl RateLimiter {
    pub fn new(rate_bps: u64, queue_bytes: usize) -> Self {
        RateLimiter { rate_bps, queue_bytes, busy_until: None }
    }

    /// How long `len` bytes occupy the wire.
    pub fn serialization(&self, len: usize) -> Duration {
        Duration::from_nanos((len as u64 * 8).saturating_mul(1_000_000_000) / self.rate_bps)
    }

    /// Bytes waiting for (or on) the wire at `now`.
    pub fn backlog(&self, now: Instant) -> usize {
        match self.busy_until {
            Some(t) if t > now => {
                let left = t - now;
                (left.as_nanos() * u128::from(self.rate_bps) / 8 / 1_000_000_000) as usize
            }
            _ => 0,
        }
    }

    /// A packet of `len` bytes arrives at `now`: when has its last bit left,
    /// or is the queue too full to take it?
    pub fn admit(&mut self, now: Instant, len: usize) -> Result<Instant, Drop> {
        if self.backlog(now) + len > self.queue_bytes {
            return Err(Drop::Queue);
        }
        let start = match self.busy_until {
            Some(t) if t > now => t,
            _ => now,
        };
        let done = start + self.serialization(len);
        self.busy_until = Some(done);
        Ok(done)
    }
}

/// One direction's whole model: loss, then the queue and the wire, then the
/// delay and jitter. The order is netem's: a lost packet takes no room in the
/// queue, and delay is added after the wire, as propagation is.
#[derive(Debug, Clone)]
pub struct Shaper {
    config: DirectionConfig,
    rng: Rng,
    in_bad_state: bool,
    limiter: Option<RateLimiter>,
    last_release: Option<Instant>,
}

impl Shaper {
    pub fn new(config: DirectionConfig) -> Self {
        let limiter = config.rate_bps.map(|r| RateLimiter::new(r, config.queue_bytes));
        Shaper {
            rng: Rng::new(config.seed),
            in_bad_state: false,
            limiter,
            last_release: None,
            config,
        }
    }

    /// Is this packet lost? One step of the Gilbert-Elliott chain (if any),
    /// then the independent loss.
    pub fn lose(&mut self) -> bool {
        let mut lost = false;
        if let Some(ge) = self.config.burst {
            let switch = if self.in_bad_state { ge.bad_to_good } else { ge.good_to_bad };
            if self.rng.chance(switch) {
                self.in_bad_state = !self.in_bad_state;
            }
            let p = if self.in_bad_state { ge.loss_in_bad } else { ge.loss_in_good };
            lost = self.rng.chance(p);
        }
        // Always draw, so adding burst loss does not shift which packets the
        // independent loss picks (and the other way round).
        let independent = self.rng.chance(self.config.loss);
        lost || independent
    }

    /// Whether the bursty model is in its Bad state now (for tests).
    pub fn in_bad_state(&self) -> bool {
        self.in_bad_state
    }

    /// A packet of `len` bytes arrived at `now`. `Ok(t)`: write it to the
    /// other side at `t`. Release times never go backwards, so packets leave
    /// in the order they came (jitter without reordering).
    pub fn admit(&mut self, now: Instant, len: usize) -> Result<Instant, Drop> {
        if self.lose() {
            return Err(Drop::Loss);
        }
        let off_the_wire = match &mut self.limiter {
            Some(l) => l.admit(now, len)?,
            None => now,
        };
        let mut release = off_the_wire + self.config.delay;
        if !self.config.jitter.is_zero() {
            // Uniform in [-jitter, +jitter], never below zero total delay.
            let j = self.config.jitter.as_secs_f64() * (2.0 * self.rng.next_f64() - 1.0);
            let delay = (self.config.delay.as_secs_f64() + j).max(0.0);
            release = off_the_wire + Duration::from_secs_f64(delay);
        }
        if let Some(last) = self.last_release {
            release = release.max(last);
        }
        self.last_release = Some(release);
        Ok(release)
    }
}
