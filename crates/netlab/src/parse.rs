//! The command line's units: `100ms`, `1%`, `10mbit`. Written the way `tc`
//! spells them, so a learner who later meets netem already knows the words.

use std::time::Duration;

/// `250us`, `20ms`, `1.5s`, or a bare number of milliseconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1e-3)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("not a duration: {s:?} (try 50ms)"))?;
    if !(0.0..=3600.0).contains(&(v * scale)) {
        return Err(format!("duration out of range: {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// `1%`, `0.5%`, or a fraction such as `0.01`.
pub fn probability(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => s.parse::<f64>(),
    }
    .map_err(|_| format!("not a probability: {s:?} (try 1%)"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("probability out of range: {s:?}"));
    }
    Ok(v)
}

/// Bits per second: `10mbit`, `500kbit`, `1gbit`, `9600bit`.
pub fn rate(s: &str) -> Result<u64, String> {
    let s = s.trim().to_ascii_lowercase();
    let (num, scale) = if let Some(n) = s.strip_suffix("gbit") {
        (n, 1e9)
    } else if let Some(n) = s.strip_suffix("mbit") {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix("kbit") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix("bit") {
        (n, 1.0)
    } else {
        return Err(format!("not a rate: {s:?} (try 10mbit)"));
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("not a rate: {s:?} (try 10mbit)"))?;
    let bps = (v * scale).round();
    if !(1000.0..=100e9).contains(&bps) {
        return Err(format!("rate out of range (1kbit to 100gbit): {s:?}"));
    }
    Ok(bps as u64)
}

/// Bytes: `100000`, `64kb`, `1mb` (powers of 1000, like tc).
pub fn bytes(s: &str) -> Result<usize, String> {
    let s = s.trim().to_ascii_lowercase();
    let (num, scale) = if let Some(n) = s.strip_suffix("mb") {
        (n, 1_000_000.0)
    } else if let Some(n) = s.strip_suffix("kb") {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('b') {
        (n, 1.0)
    } else {
        (s.as_str(), 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("not a size: {s:?} (try 64kb)"))?;
    Ok((v * scale).round() as usize)
}
