//! The picture: latency percentile curves per target (x: percentile on a log scale of
//! 1/(1-p), so 90, 99, 99.9, 99.99 are evenly spaced; y: latency, log scale) and
//! throughput over time per run.
//!
//! Hand-written SVG (about 150 lines) rather than `plotters`: the percentile axis is a
//! custom transform that plotters would need a coordinate type for anyway, the output is
//! a small, diffable text file fit to commit, and the tool keeps to a short dependency
//! list (plotters' SVG backend alone brings a font and image stack behind its features).

use std::fmt::Write as _;

const W: f64 = 960.0;
const H: f64 = 380.0;
const COLORS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

pub struct Curve {
    pub target: String,
    /// (percentile 0..100, latency us)
    pub points: Vec<(f64, f64)>,
}

pub struct Timeline {
    pub target: String,
    pub round: usize,
    pub bucket_s: f64,
    pub rps: Vec<f64>,
}

pub struct Picture {
    pub title: String,
    pub targets: Vec<String>,
    pub curves: Vec<Curve>,
    pub timelines: Vec<Timeline>,
}

struct Panel {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
}

impl Panel {
    fn px(&self, fx: f64) -> f64 {
        self.x0 + fx.clamp(0.0, 1.0) * self.w
    }
    fn py(&self, fy: f64) -> f64 {
        self.y0 + self.h - fy.clamp(0.0, 1.0) * self.h
    }
}

/// `-log10(1 - p)`: 0 at 0%, 1 at 90%, 2 at 99%, ...
pub fn nines(percentile: f64) -> f64 {
    let rest = (1.0 - percentile / 100.0).max(1e-9);
    -rest.log10()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn color(targets: &[String], t: &str) -> &'static str {
    COLORS[targets.iter().position(|x| x == t).unwrap_or(0) % COLORS.len()]
}

pub fn render(p: &Picture) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">{}</text>"#,
        W / 2.0,
        esc(&p.title)
    );
    latency_panel(
        &mut s,
        p,
        &Panel {
            x0: 70.0,
            y0: 50.0,
            w: 360.0,
            h: 270.0,
        },
    );
    throughput_panel(
        &mut s,
        p,
        &Panel {
            x0: 560.0,
            y0: 50.0,
            w: 370.0,
            h: 270.0,
        },
    );
    for (i, t) in p.targets.iter().enumerate() {
        let x = 70.0 + 150.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="362" x2="{}" y2="362" stroke="{}" stroke-width="3"/><text x="{}" y="366">{}</text>"#,
            x + 24.0,
            color(&p.targets, t),
            x + 30.0,
            esc(t)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn axes(s: &mut String, a: &Panel, title: &str, xlabel: &str) {
    let _ = writeln!(
        s,
        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#444"/><text x="{}" y="{}" text-anchor="middle" font-size="12">{}</text><text x="{}" y="{}" text-anchor="middle">{}</text>"##,
        a.x0,
        a.y0,
        a.w,
        a.h,
        a.x0 + a.w / 2.0,
        a.y0 - 8.0,
        esc(title),
        a.x0 + a.w / 2.0,
        a.y0 + a.h + 30.0,
        esc(xlabel)
    );
}

fn grid_line(s: &mut String, x1: f64, y1: f64, x2: f64, y2: f64) {
    let _ = writeln!(
        s,
        r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#ddd"/>"##
    );
}

fn us_label(us: f64) -> String {
    match us {
        u if u >= 1e6 => format!("{} s", u / 1e6),
        u if u >= 1e3 => format!("{} ms", u / 1e3),
        u => format!("{u} us"),
    }
}

fn latency_panel(s: &mut String, p: &Picture, a: &Panel) {
    axes(s, a, "latency by percentile (all rounds)", "percentile");
    let pts = p.curves.iter().flat_map(|c| c.points.iter());
    let (mut lo, mut hi, mut xmax) = (f64::MAX, 0.0f64, 2.0f64);
    for &(q, us) in pts {
        lo = lo.min(us.max(1.0));
        hi = hi.max(us);
        xmax = xmax.max(nines(q));
    }
    if hi <= 0.0 {
        return;
    }
    let xmax = xmax.ceil().min(6.0);
    let (ylo, yhi) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let fy = |us: f64| (us.max(1.0).log10() - ylo) / (yhi - ylo);
    for d in 0..=(xmax as usize) {
        let x = a.px(d as f64 / xmax);
        grid_line(s, x, a.y0, x, a.y0 + a.h);
        let label = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"][d];
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"#,
            a.y0 + a.h + 14.0
        );
    }
    for e in (ylo as i32)..=(yhi as i32) {
        let us = 10f64.powi(e);
        let y = a.py(fy(us));
        grid_line(s, a.x0, y, a.x0 + a.w, y);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            a.x0 - 4.0,
            y + 4.0,
            us_label(us)
        );
    }
    for c in &p.curves {
        let pts: Vec<String> = c
            .points
            .iter()
            .map(|&(q, us)| format!("{:.1},{:.1}", a.px(nines(q) / xmax), a.py(fy(us))))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            color(&p.targets, &c.target),
            pts.join(" ")
        );
    }
}

fn throughput_panel(s: &mut String, p: &Picture, a: &Panel) {
    axes(
        s,
        a,
        "throughput over time (one line per run)",
        "seconds into the run",
    );
    let tmax = p
        .timelines
        .iter()
        .map(|t| t.bucket_s * t.rps.len() as f64)
        .fold(0.0, f64::max);
    let ymax = p
        .timelines
        .iter()
        .flat_map(|t| t.rps.iter())
        .copied()
        .fold(0.0, f64::max);
    if tmax <= 0.0 || ymax <= 0.0 {
        return;
    }
    let ystep = nice_step(ymax / 5.0);
    let ytop = (ymax / ystep).ceil() * ystep;
    let mut v = 0.0;
    while v <= ytop + ystep / 2.0 {
        let y = a.py(v / ytop);
        grid_line(s, a.x0, y, a.x0 + a.w, y);
        let label = if ystep >= 1000.0 {
            format!("{}k", v / 1000.0)
        } else {
            format!("{v}")
        };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{label}/s</text>"#,
            a.x0 - 4.0,
            y + 4.0
        );
        v += ystep;
    }
    let xstep = nice_step(tmax / 5.0);
    let mut t = 0.0;
    while t <= tmax + 1e-9 {
        let x = a.px(t / tmax);
        grid_line(s, x, a.y0, x, a.y0 + a.h);
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{t}</text>"#,
            a.y0 + a.h + 14.0
        );
        t += xstep;
    }
    for tl in &p.timelines {
        let pts: Vec<String> = tl
            .rps
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "{:.1},{:.1}",
                    a.px((i as f64 + 0.5) * tl.bucket_s / tmax),
                    a.py(r / ytop)
                )
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-opacity="0.7" stroke-width="1.2" points="{}"><title>{} round {}</title></polyline>"#,
            color(&p.targets, &tl.target),
            pts.join(" "),
            esc(&tl.target),
            tl.round
        );
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
pub fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|v| *v >= raw)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maths() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(0.0), 0.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(18_000.0), 20_000.0);
        assert_eq!(nice_step(0.7), 1.0);
    }

    #[test]
    fn renders_a_well_formed_picture() {
        let p = Picture {
            title: "get <P1>".into(),
            targets: vec!["respgate".into(), "direct".into()],
            curves: vec![Curve {
                target: "respgate".into(),
                points: vec![(0.0, 50.0), (90.0, 80.0), (99.9, 900.0)],
            }],
            timelines: vec![Timeline {
                target: "direct".into(),
                round: 1,
                bucket_s: 0.1,
                rps: vec![1000.0, 2000.0],
            }],
        };
        let svg = render(&p);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("get &lt;P1&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("99.9%") && svg.contains("1 ms"));
    }
}
