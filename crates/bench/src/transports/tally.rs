//! The arithmetic of the transports report, kept apart so it can be tested
//! on known inputs: did each subscriber get every id exactly once, what an
//! update cost on the wire, and what the kernel says the server process used.

/// What one subscriber's ids say about delivery, against the publisher's
/// ids `1..=published`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdCheck {
    /// Ids received, counting repeats.
    pub received: u64,
    /// Ids in `1..=published` never received.
    pub lost: u64,
    /// Receipts beyond the first of the same id.
    pub duplicated: u64,
    /// Ids outside `1..=published` (from nowhere: a bug if ever non-zero).
    pub unexpected: u64,
    /// Receipts of an id lower than one received before it.
    pub out_of_order: u64,
}

impl IdCheck {
    /// Adds another subscriber's check to this one.
    pub fn add(&mut self, other: IdCheck) {
        self.received += other.received;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.unexpected += other.unexpected;
        self.out_of_order += other.out_of_order;
    }

    /// Whether delivery was exact: every id once, nothing else.
    pub fn is_exact(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.unexpected == 0
    }
}

/// Checks the ids one subscriber received, in the order it received them,
/// against a publisher that published ids `1..=published`.
pub fn check_ids(ids: &[u64], published: u64) -> IdCheck {
    let mut seen = vec![false; published as usize];
    let mut check = IdCheck { received: ids.len() as u64, ..IdCheck::default() };
    let mut highest = 0;
    for &id in ids {
        if id < highest {
            check.out_of_order += 1;
        }
        highest = highest.max(id);
        match id.checked_sub(1).and_then(|i| seen.get_mut(i as usize)) {
            Some(slot) if *slot => check.duplicated += 1,
            Some(slot) => *slot = true,
            None => check.unexpected += 1,
        }
    }
    check.lost = seen.iter().filter(|s| !**s).count() as u64;
    check
}

/// `total` shared out over `count` (0 when there is nothing to share over).
pub fn per(total: u64, count: u64) -> f64 {
    if count == 0 { 0.0 } else { total as f64 / count as f64 }
}

/// The JSON payload of `len` bytes every technique carries: `{"p":"xx..."}`,
/// which serializes to exactly `len` bytes (at least 8, the empty object's
/// frame).
pub fn payload(len: usize) -> serde_json::Value {
    serde_json::json!({ "p": "x".repeat(len.saturating_sub(8)) })
}

/// CPU time and memory of a process, as Linux reports them in `/proc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// User plus system CPU time, in clock ticks, all threads together.
    pub cpu_ticks: u64,
    /// Resident memory now, in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// The most resident memory the process ever had, in KiB (`VmHWM`, the
    /// "high water mark").
    pub peak_kib: u64,
}

/// Clock ticks per second in `/proc/<pid>/stat`. Linux reports CPU times
/// there in `USER_HZ`, fixed at 100 in the kernel's ABI whatever the
/// kernel's own tick rate is (`getconf CLK_TCK` prints it).
pub const TICKS_PER_SECOND: u64 = 100;

/// Reads `utime + stime` out of the text of `/proc/<pid>/stat`. The second
/// field is the command name in parentheses and may itself hold spaces and
/// parentheses, so the fields are counted from the *last* `)`: after it come
/// field 3 (state) onwards, and utime and stime are fields 14 and 15.
pub fn parse_stat_cpu(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Reads a `Name:   1234 kB` line out of the text of `/proc/<pid>/status`.
pub fn parse_status_kib(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Reads both files for `pid`.
pub fn read_usage(pid: u32) -> std::io::Result<Usage> {
    crate::measure::needs_linux("/proc/<pid>/stat and /proc/<pid>/status")?;
    let bad = |what: &str| std::io::Error::other(format!("cannot read {what} of process {pid}"));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(Usage {
        cpu_ticks: parse_stat_cpu(&stat).ok_or_else(|| bad("utime/stime"))?,
        rss_kib: parse_status_kib(&status, "VmRSS").ok_or_else(|| bad("VmRSS"))?,
        peak_kib: parse_status_kib(&status, "VmHWM").ok_or_else(|| bad("VmHWM"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_sequence_is_exact() {
        let c = check_ids(&[1, 2, 3, 4, 5], 5);
        assert_eq!(c, IdCheck { received: 5, ..IdCheck::default() });
        assert!(c.is_exact());
    }

    #[test]
    fn gaps_repeats_strangers_and_reordering_are_each_counted() {
        // 3 and 6 never came, 2 came twice, 9 was never published, and the
        // second 2 arrived after 4.
        let c = check_ids(&[1, 2, 4, 2, 5, 9], 6);
        assert_eq!(c.received, 6);
        assert_eq!(c.lost, 2);
        assert_eq!(c.duplicated, 1);
        assert_eq!(c.unexpected, 1);
        assert_eq!(c.out_of_order, 1);
        assert!(!c.is_exact());
        // Id 0 is never published either.
        assert_eq!(check_ids(&[0], 0).unexpected, 1);
        // Nothing received: everything lost.
        assert_eq!(check_ids(&[], 4).lost, 4);
    }

    #[test]
    fn checks_add_up_over_subscribers() {
        let mut all = check_ids(&[1, 2], 2);
        all.add(check_ids(&[1, 1], 2));
        assert_eq!(all, IdCheck { received: 4, lost: 1, duplicated: 1, ..IdCheck::default() });
    }

    #[test]
    fn cost_per_update() {
        // 100 subscribers each got 80 updates over 1,200,000 bytes: 150 each.
        assert_eq!(per(1_200_000, 100 * 80), 150.0);
        assert_eq!(per(5, 0), 0.0);
    }

    #[test]
    fn payloads_serialize_to_the_asked_size() {
        for len in [8, 30, 5000] {
            let text = serde_json::to_string(&payload(len)).expect("a map of a string");
            assert_eq!(text.len(), len);
        }
    }

    #[test]
    fn proc_files_parse() {
        // A command name with a space and a parenthesis, as `comm` may have.
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    157 43 0 0 20 0 3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_cpu(stat), Some(200));
        assert_eq!(parse_stat_cpu("garbage"), None);
        let status =
            "Name:\tbench\nVmPeak:\t  99999 kB\nVmHWM:\t   12000 kB\nVmRSS:\t    8000 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(12000));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(8000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }
}
