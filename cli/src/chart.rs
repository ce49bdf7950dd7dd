//! The ratios of a `pcore bench` run as an SVG bar chart: one bar per figure on a log scale
//! centred on 1.0, left (green) where pcore is faster or smaller than the peer, right (red)
//! where it is slower or larger.

use crate::bench::Ratio;
use std::fmt::Write;

const WIDTH: f64 = 1000.0;
const LABEL_WIDTH: f64 = 430.0;
/// A column at the right for the ratios' numbers, so no number ever overlaps a label.
const VALUE_WIDTH: f64 = 110.0;
const ROW: f64 = 20.0;
const TOP: f64 = 60.0;
/// The scale spans 1/16x to 16x; beyond that a bar is clipped and says so.
const SPAN_LOG2: f64 = 4.0;

pub fn svg(title: &str, ratios: &[Ratio]) -> String {
    let height = TOP + ROW * ratios.len() as f64 + 40.0;
    let plot = WIDTH - LABEL_WIDTH - VALUE_WIDTH - 20.0;
    let centre = LABEL_WIDTH + plot / 2.0;
    let x_of = |ratio: f64| centre + ratio.log2().clamp(-SPAN_LOG2, SPAN_LOG2) / SPAN_LOG2 * plot / 2.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(s, r##"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"##, escape(title));
    let _ = writeln!(
        s,
        r##"<text x="10" y="40" fill="#555">ratio of pcore's figure to the peer's, both measured in the same run (log scale; left of 1: pcore is faster or smaller)</text>"##
    );
    for tick in [-4i32, -3, -2, -1, 0, 1, 2, 3, 4] {
        let ratio = 2f64.powi(tick);
        let x = x_of(ratio);
        let label = if tick < 0 { format!("1/{}", 1 << -tick) } else { format!("{}", 1 << tick) };
        let stroke = if tick == 0 { "#000" } else { "#ddd" };
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="{stroke}"/>"##,
            TOP - 6.0,
            height - 30.0
        );
        let _ =
            writeln!(s, r##"<text x="{x:.1}" y="{}" text-anchor="middle" fill="#555">{label}x</text>"##, height - 14.0);
    }
    for (i, r) in ratios.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let ratio = r.ratio();
        let (x0, x1) = (x_of(1.0), x_of(ratio));
        let (left, width) = if x1 < x0 { (x1, x0 - x1) } else { (x0, x1 - x0) };
        let fill = if ratio <= 1.0 { "#3a8f3a" } else { "#c0392b" };
        let label = format!("{} · {} vs {}", r.group, r.label, r.peer_name);
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LABEL_WIDTH - 8.0,
            y + 13.0,
            escape(&label)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{left:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"/>"##,
            y + 3.0,
            width.max(1.0),
            ROW - 6.0
        );
        let clipped = if ratio.log2().abs() > SPAN_LOG2 { " (off scale)" } else { "" };
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="{fill}">{ratio:.2}{clipped}</text>"##,
            WIDTH - 10.0,
            y + 13.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
