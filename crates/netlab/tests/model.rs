//! The link's arithmetic, without root: the loss models, the rate limiter and
//! the shaper's ordering. These run in plain `cargo test`.

use std::time::{Duration, Instant};

use netlab::model::{DirectionConfig, Drop, GilbertElliott, RateLimiter, Rng, Shaper};
use netlab::parse;

fn shaper(config: DirectionConfig) -> Shaper {
    Shaper::new(config)
}

#[test]
fn random_loss_is_near_the_configured_rate_and_repeats_with_the_seed() {
    let n = 10_000;
    let count = |seed| {
        let mut s = shaper(DirectionConfig { loss: 0.05, seed, ..Default::default() });
        (0..n).filter(|_| s.lose()).count()
    };
    let lost = count(7);
    // Binomial: mean 500, standard deviation about 21.8; allow 5 of them.
    assert!((391..=609).contains(&lost), "lost {lost} of {n} at 5%");
    assert_eq!(lost, count(7), "the same seed must lose the same packets");
    assert_ne!(lost, count(8), "another seed should lose others (this can tie, rarely)");
}

#[test]
fn no_loss_configured_means_none_lost() {
    let mut s = shaper(DirectionConfig::default());
    assert!((0..10_000).all(|_| !s.lose()));
}

#[test]
fn gilbert_elliott_loses_in_bursts_at_its_mean_rate() {
    let ge = GilbertElliott {
        good_to_bad: 0.01,
        bad_to_good: 0.25,
        loss_in_good: 0.0,
        loss_in_bad: 1.0,
    };
    // Mean loss: 0.01 / 0.26 = 3.85%; mean burst 1 / 0.25 = 4 packets.
    assert!((ge.mean_loss() - 0.01 / 0.26).abs() < 1e-12);
    let mut s = shaper(DirectionConfig { burst: Some(ge), seed: 3, ..Default::default() });
    let n = 100_000;
    let losses: Vec<bool> = (0..n).map(|_| s.lose()).collect();
    let lost = losses.iter().filter(|&&l| l).count() as f64 / n as f64;
    assert!((lost - ge.mean_loss()).abs() < 0.01, "observed {lost}, model {}", ge.mean_loss());
    // Runs of consecutive losses: their mean length is near 4, where
    // independent loss at the same rate would give runs of about 1.04.
    let runs = losses.split(|l| !l).filter(|r| !r.is_empty()).collect::<Vec<_>>();
    let mean_run = runs.iter().map(|r| r.len()).sum::<usize>() as f64 / runs.len() as f64;
    assert!((3.0..5.0).contains(&mean_run), "mean burst {mean_run}");
}

#[test]
fn gilbert_elliott_state_machine_steps() {
    // Always switch: Good -> Bad on the first packet (lost), Bad -> Good on the
    // second (kept), and so on.
    let ge =
        GilbertElliott { good_to_bad: 1.0, bad_to_good: 1.0, loss_in_good: 0.0, loss_in_bad: 1.0 };
    let mut s = shaper(DirectionConfig { burst: Some(ge), ..Default::default() });
    assert!(!s.in_bad_state());
    assert!(s.lose());
    assert!(s.in_bad_state());
    assert!(!s.lose());
    assert!(!s.in_bad_state());
    // Never leave Bad once in it.
    let ge =
        GilbertElliott { good_to_bad: 1.0, bad_to_good: 0.0, loss_in_good: 0.0, loss_in_bad: 1.0 };
    let mut s = shaper(DirectionConfig { burst: Some(ge), ..Default::default() });
    assert!((0..1000).all(|_| s.lose()));
}

#[test]
fn serialization_time_is_bits_over_rate() {
    let l = RateLimiter::new(10_000_000, 100_000);
    // 1500 bytes = 12,000 bits at 10 Mbit/s = 1.2 ms.
    assert_eq!(l.serialization(1500), Duration::from_micros(1200));
    let l = RateLimiter::new(1_000_000_000, 100_000);
    assert_eq!(l.serialization(1500), Duration::from_micros(12));
}

#[test]
fn back_to_back_packets_queue_behind_each_other() {
    let mut l = RateLimiter::new(10_000_000, 100_000);
    let t0 = Instant::now();
    let a = l.admit(t0, 1500).expect("room");
    let b = l.admit(t0, 1500).expect("room");
    assert_eq!(a - t0, Duration::from_micros(1200));
    assert_eq!(b - t0, Duration::from_micros(2400), "the second waits for the first");
    assert_eq!(l.backlog(t0), 3000);
    // Half a packet's time later, half a packet has gone.
    assert_eq!(l.backlog(t0 + Duration::from_micros(600)), 2250);
    // Once the wire is idle again, a packet goes straight on.
    let later = t0 + Duration::from_millis(10);
    assert_eq!(l.admit(later, 1500).expect("room") - later, Duration::from_micros(1200));
}

#[test]
fn a_full_queue_drops_at_the_tail() {
    let mut l = RateLimiter::new(1_000_000, 4500);
    let t0 = Instant::now();
    for _ in 0..3 {
        l.admit(t0, 1500).expect("three packets fit in 4500 bytes");
    }
    assert_eq!(l.admit(t0, 1500), Err(Drop::Queue));
    // A small one still fits nowhere: the queue is exactly full.
    assert_eq!(l.admit(t0, 1), Err(Drop::Queue));
    // 12 ms later (one packet at 1 Mbit/s) there is room for one again.
    assert!(l.admit(t0 + Duration::from_millis(12), 1500).is_ok());
}

#[test]
fn delay_and_rate_add_up_and_jitter_never_reorders() {
    let t0 = Instant::now();
    let mut s = shaper(DirectionConfig {
        delay: Duration::from_millis(25),
        rate_bps: Some(12_000_000),
        ..Default::default()
    });
    // 1000 bytes at 12 Mbit/s: 666 us on the wire, then 25 ms of delay.
    let t = s.admit(t0, 1000).expect("no loss configured");
    assert_eq!(t - t0, Duration::from_millis(25) + Duration::from_nanos(666_666));

    let mut s = shaper(DirectionConfig {
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(10),
        seed: 9,
        ..Default::default()
    });
    let mut last = t0;
    let mut spread = (Duration::MAX, Duration::ZERO);
    for i in 0..1000 {
        let now = t0 + Duration::from_micros(100 * i);
        let t = s.admit(now, 100).expect("no loss configured");
        assert!(t >= last, "packet {i} would overtake the one before it");
        assert!(t - now <= Duration::from_millis(30) + Duration::from_micros(1));
        spread = (spread.0.min(t - now), spread.1.max(t - now));
        last = t;
    }
    assert!(spread.1 - spread.0 > Duration::from_millis(5), "jitter varies the delay: {spread:?}");
}

#[test]
fn rng_is_uniform_enough() {
    let mut r = Rng::new(42);
    let mean = (0..100_000).map(|_| r.next_f64()).sum::<f64>() / 100_000.0;
    assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
}

#[test]
fn units_parse_like_tc() {
    assert_eq!(parse::duration("100ms"), Ok(Duration::from_millis(100)));
    assert_eq!(parse::duration("250us"), Ok(Duration::from_micros(250)));
    assert_eq!(parse::duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse::probability("1%"), Ok(0.01));
    assert_eq!(parse::probability("0.05"), Ok(0.05));
    assert!(parse::probability("150%").is_err());
    assert_eq!(parse::rate("10mbit"), Ok(10_000_000));
    assert_eq!(parse::rate("1gbit"), Ok(1_000_000_000));
    assert!(parse::rate("10").is_err(), "a rate needs its unit");
    assert_eq!(parse::bytes("64kb"), Ok(64_000));
}
