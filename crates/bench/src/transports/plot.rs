//! The report's picture, as hand-written SVG (a few rectangles, lines and
//! labels do not need a plotting library). One row of two panels per payload
//! size: on the left, bytes on the wire per delivered update (both
//! directions) for each technique; on the right, delivery latency, a bar to
//! the median with a tick at p99, on a logarithmic axis because the
//! techniques differ by orders of magnitude. Within a technique, one bar per
//! subscriber count.

use std::fmt::Write as _;

use super::{Row, Technique};

const WIDTH: f64 = 980.0;
const ROW_HEIGHT: f64 = 300.0;
const TOP: f64 = 60.0;
const PANEL_WIDTH: f64 = 400.0;
const PLOT_HEIGHT: f64 = 200.0;
const LEFT_X: f64 = 70.0;
const RIGHT_X: f64 = 560.0;
/// One colour per subscriber count, in the order the counts were run.
const COLOURS: [&str; 4] = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1"];

/// The whole picture.
pub fn svg(rows: &[Row], poll_ms: u64) -> String {
    let mut payloads: Vec<usize> = rows.iter().map(|r| r.payload).collect();
    payloads.dedup();
    let mut counts: Vec<usize> = rows.iter().map(|r| r.subscribers).collect();
    counts.sort_unstable();
    counts.dedup();
    let mut techniques: Vec<Technique> = Vec::new();
    for r in rows {
        if !techniques.contains(&r.technique) {
            techniques.push(r.technique);
        }
    }
    let height = TOP + ROW_HEIGHT * payloads.len() as f64 + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="20" font-size="15" text-anchor="middle">bench transports: cost and delay of one update (short polling every {poll_ms} ms)</text>"#,
        WIDTH / 2.0
    );
    // Legend: one swatch per subscriber count.
    for (i, n) in counts.iter().enumerate() {
        let x = WIDTH / 2.0 - 210.0 + i as f64 * 150.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="32" width="12" height="12" fill="{}"/><text x="{}" y="42">{n} subscriber{}</text>"#,
            COLOURS[i % COLOURS.len()],
            x + 16.0,
            if *n == 1 { "" } else { "s" }
        );
    }
    for (row_i, payload) in payloads.iter().enumerate() {
        let y0 = TOP + ROW_HEIGHT * row_i as f64 + 30.0;
        let cells: Vec<&Row> = rows.iter().filter(|r| r.payload == *payload).collect();
        bytes_panel(&mut s, &cells, &techniques, &counts, *payload, y0);
        latency_panel(&mut s, &cells, &techniques, &counts, *payload, y0);
    }
    s.push_str("</svg>\n");
    s
}

/// Where the bar for (technique i, count j) goes: x and width.
fn bar_x(x0: f64, techniques: usize, counts: usize, i: usize, j: usize) -> (f64, f64) {
    let group = PANEL_WIDTH / techniques.max(1) as f64;
    let bar = (group * 0.8) / counts.max(1) as f64;
    (x0 + group * i as f64 + group * 0.1 + bar * j as f64, bar)
}

fn labels(s: &mut String, x0: f64, y_axis: f64, techniques: &[Technique]) {
    let group = PANEL_WIDTH / techniques.len().max(1) as f64;
    for (i, t) in techniques.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x0 + group * (i as f64 + 0.5),
            y_axis + 16.0,
            t.name()
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{x0}" y1="{y_axis}" x2="{}" y2="{y_axis}" stroke="#333"/>"##,
        x0 + PANEL_WIDTH
    );
}

fn bytes_panel(
    s: &mut String,
    cells: &[&Row],
    techniques: &[Technique],
    counts: &[usize],
    payload: usize,
    y0: f64,
) {
    let total = |r: &Row| r.down_per_update + r.up_per_update;
    let top = nice_ceiling(cells.iter().map(|r| total(r)).fold(0.0, f64::max));
    let y_axis = y0 + PLOT_HEIGHT;
    let _ = writeln!(
        s,
        r#"<text x="{LEFT_X}" y="{:.1}" font-weight="bold">{payload}-byte payload: bytes per delivered update, both ways</text>"#,
        y0 - 10.0
    );
    for k in 0..=4 {
        let v = top * k as f64 / 4.0;
        let y = y_axis - PLOT_HEIGHT * k as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT_X}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
            LEFT_X + PANEL_WIDTH,
            LEFT_X - 4.0,
            y + 4.0
        );
    }
    for (i, t) in techniques.iter().enumerate() {
        for (j, n) in counts.iter().enumerate() {
            let Some(r) = cells.iter().find(|r| r.technique == *t && r.subscribers == *n) else {
                continue;
            };
            let (x, w) = bar_x(LEFT_X, techniques.len(), counts.len(), i, j);
            let h = if top > 0.0 { PLOT_HEIGHT * total(r) / top } else { 0.0 };
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{h:.1}" fill="{}"><title>{} {n} subs: {:.0} B down + {:.0} B up</title></rect>"#,
                y_axis - h,
                COLOURS[j % COLOURS.len()],
                t.name(),
                r.down_per_update,
                r.up_per_update
            );
        }
    }
    labels(s, LEFT_X, y_axis, techniques);
}

fn latency_panel(
    s: &mut String,
    cells: &[&Row],
    techniques: &[Technique],
    counts: &[usize],
    payload: usize,
    y0: f64,
) {
    // Decades from 0.1 ms up to the first power of ten above the worst p99.
    let worst = cells.iter().map(|r| r.p99_ms).fold(0.1, f64::max);
    let (lo, hi) = (-1i32, worst.log10().ceil().max(0.0) as i32);
    let y_axis = y0 + PLOT_HEIGHT;
    let y_of = |ms: f64| {
        let l = ms.max(0.1).log10();
        y_axis - PLOT_HEIGHT * (l - lo as f64) / (hi - lo) as f64
    };
    let _ = writeln!(
        s,
        r#"<text x="{RIGHT_X}" y="{:.1}" font-weight="bold">{payload}-byte payload: latency, publish to receipt (ms)</text>"#,
        y0 - 10.0
    );
    for d in lo..=hi {
        let v = 10f64.powi(d);
        let y = y_of(v);
        let label = if d < 0 { format!("{v:.1}") } else { format!("{v:.0}") };
        let _ = writeln!(
            s,
            r##"<line x1="{RIGHT_X}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            RIGHT_X + PANEL_WIDTH,
            RIGHT_X - 4.0,
            y + 4.0
        );
    }
    for (i, t) in techniques.iter().enumerate() {
        for (j, n) in counts.iter().enumerate() {
            let Some(r) = cells.iter().find(|r| r.technique == *t && r.subscribers == *n) else {
                continue;
            };
            let (x, w) = bar_x(RIGHT_X, techniques.len(), counts.len(), i, j);
            let top = y_of(r.p50_ms);
            let p99 = y_of(r.p99_ms);
            let _ = writeln!(
                s,
                r##"<rect x="{x:.1}" y="{top:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{} {n} subs: p50 {:.2} ms, p99 {:.2} ms</title></rect><line x1="{:.1}" y1="{p99:.1}" x2="{:.1}" y2="{p99:.1}" stroke="#000" stroke-width="2"/><line x1="{:.1}" y1="{p99:.1}" x2="{:.1}" y2="{top:.1}" stroke="#000"/>"##,
                (y_axis - top).max(0.0),
                COLOURS[j % COLOURS.len()],
                t.name(),
                r.p50_ms,
                r.p99_ms,
                x + w * 0.2,
                x + w * 0.8,
                x + w / 2.0,
                x + w / 2.0
            );
        }
    }
    labels(s, RIGHT_X, y_axis, techniques);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10">bar: p50, tick: p99</text>"#,
        RIGHT_X + PANEL_WIDTH,
        y_axis + 32.0
    );
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v` (an axis top).
pub fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|c| *c >= v).unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::super::tally::IdCheck;
    use super::*;

    fn row(technique: Technique, payload: usize, subscribers: usize, down: f64) -> Row {
        Row {
            technique,
            payload,
            subscribers,
            published: 10,
            ids: IdCheck::default(),
            bad_subscribers: 0,
            down_per_update: down,
            up_per_update: 0.0,
            requests_per_update: 0.0,
            connections: 1,
            setup_bytes_per_sub: 0.0,
            p50_ms: 1.0,
            p99_ms: 100.0,
            cpu_ms_per_sub: 0.0,
            rss_kib_per_sub: 0.0,
            publish_secs: 1.0,
        }
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(500.0), 500.0);
        assert_eq!(nice_ceiling(5001.0), 10000.0);
    }

    #[test]
    fn one_bar_per_cell_and_heights_in_proportion() {
        let rows = vec![
            row(Technique::Sse, 30, 1, 50.0),
            row(Technique::WebSocket, 30, 1, 100.0),
            row(Technique::Sse, 30, 100, 25.0),
        ];
        let svg = svg(&rows, 250);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        // Background, legend (2 counts), 3 byte bars, 3 latency bars.
        assert_eq!(svg.matches("<rect").count(), 1 + 2 + 3 + 3);
        // The axis top is 100: the 100-byte bar is full height, 50 is half.
        assert!(svg.contains(r##"height="200.0" fill="#4e79a7"><title>websocket 1 subs"##));
        assert!(svg.contains(r##"height="100.0" fill="#4e79a7"><title>sse 1 subs"##));
        assert!(svg.contains(r##"height="50.0" fill="#f28e2b"><title>sse 100 subs"##));
    }
}
