//! A few lines of hand-written SVG: line charts with a log-scale x axis, one
//! line per server. No plotting crate: the picture is simple, and SVG is text
//! a chapter can show and git can diff.

use std::fmt::Write;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// CSS colour.
    pub colour: &'static str,
    /// (x, y) points, x > 0 (the x axis is logarithmic).
    pub points: Vec<(f64, f64)>,
}

/// The colour each server gets in every chart.
pub fn colour_of(server: &str) -> &'static str {
    match server {
        "threaded" => "#d62728",
        "evented" => "#1f77b4",
        "tokio" => "#2ca02c",
        "c-epoll" => "#9467bd",
        _ => "#7f7f7f",
    }
}

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 300.0;
const MARGIN_L: f64 = 70.0;
const MARGIN_B: f64 = 45.0;
const MARGIN_T: f64 = 30.0;

/// A round number at or above `v`, so the y axis ends on a readable tick.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] {
        if step * magnitude >= v {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// One chart panel at horizontal offset `x0`, as an SVG group.
fn panel(x0: f64, title: &str, y_label: &str, x_ticks: &[f64], series: &[Series]) -> String {
    let mut s = String::new();
    let (plot_w, plot_h) = (PANEL_W - MARGIN_L - 15.0, PANEL_H - MARGIN_T - MARGIN_B);
    let (left, top) = (x0 + MARGIN_L, MARGIN_T);
    let x_min = x_ticks.first().copied().unwrap_or(1.0).max(1.0).log10();
    let x_max = x_ticks.last().copied().unwrap_or(10.0).max(10.0).log10();
    let y_max = nice_ceiling(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max) * 1.05,
    );
    let px = |x: f64| left + (x.max(1.0).log10() - x_min) / (x_max - x_min) * plot_w;
    let py = |y: f64| top + plot_h - y / y_max * plot_h;
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="18" font-size="14" text-anchor="middle" font-weight="bold">{title}</text>"#,
        left + plot_w / 2.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="{left:.1}" y="{top:.1}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#444"/>"##
    );
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            left + plot_w,
            py(y),
            py(y),
            left - 5.0,
            py(y) + 4.0,
            short(y)
        );
    }
    for &x in x_ticks {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#ddd"/><text x="{0:.1}" y="{3:.1}" font-size="11" text-anchor="middle">{4}</text>"##,
            px(x),
            top,
            top + plot_h,
            top + plot_h + 15.0,
            short(x)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">connections open (log scale)</text>"#,
        left + plot_w / 2.0,
        top + plot_h + 35.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{0:.1}" y="{1:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 {0:.1} {1:.1})">{y_label}</text>"#,
        x0 + 15.0,
        top + plot_h / 2.0
    );
    for line in series {
        let pts: Vec<String> =
            line.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            pts.join(" "),
            line.colour
        );
        for &(x, y) in &line.points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                px(x),
                py(y),
                line.colour
            );
        }
    }
    s
}

/// 1500 -> "1.5k", 12 -> "12", 0.5 -> "0.5".
fn short(v: f64) -> String {
    if v >= 1000.0 {
        let k = v / 1000.0;
        if k.fract() == 0.0 { format!("{k:.0}k") } else { format!("{k:.1}k") }
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Two panels side by side (left and right), sharing a legend and a caption.
pub fn two_panels(
    left: (&str, &str, &[Series]),
    right: (&str, &str, &[Series]),
    x_ticks: &[f64],
    caption: &str,
) -> String {
    let width = 2.0 * PANEL_W + 20.0;
    let height = PANEL_H + 50.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    s.push_str(&panel(0.0, left.0, left.1, x_ticks, left.2));
    s.push_str(&panel(PANEL_W + 20.0, right.0, right.1, x_ticks, right.2));
    let mut x = MARGIN_L;
    for line in left.2 {
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{:.1}" width="14" height="4" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            PANEL_H + 8.0,
            line.colour,
            x + 18.0,
            PANEL_H + 13.0,
            line.name
        );
        x += 100.0;
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#555">{}</text>"##,
        MARGIN_L,
        PANEL_H + 35.0,
        caption
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 8.0);
        assert_eq!(nice_ceiling(120.0), 150.0);
        assert_eq!(nice_ceiling(266.0), 300.0);
        assert_eq!(nice_ceiling(2400.0), 2500.0);
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(short(10000.0), "10k");
        assert_eq!(short(1500.0), "1.5k");
        assert_eq!(short(100.0), "100");
        assert_eq!(short(12.5), "12.5");
    }
}
