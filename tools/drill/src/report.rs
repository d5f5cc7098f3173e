//! The failover drill's HTML report: one self-contained file (inline CSS and SVG, no scripts, no external
//! assets) with the summary, a chart of in-flight jobs per region over time with the drill's events marked,
//! and the timeline. It is opened from disk or attached to a ticket, so nothing may be fetched.

use std::fmt::Write as _;

/// What GetStatus said about one region at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionSample {
    /// Jobs in flight on the region's account.
    pub in_flight: u64,
    /// Whether the account was in rotation.
    pub in_rotation: bool,
}

/// One GetStatus sample: seconds since the start, and each region in [`Report::regions`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds since the start of the drill.
    pub t: f64,
    /// One entry per region, in the report's region order.
    pub regions: Vec<RegionSample>,
}

/// A vertical line on the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Seconds since the start.
    pub t: f64,
    /// Short label, e.g. `removal`.
    pub label: String,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Seconds since the start.
    pub t: f64,
    /// What kind of line (`PHASE`, `ALERT`, `STATUS`, `MOVE`, `JOB`).
    pub kind: String,
    /// The text.
    pub text: String,
}

/// Everything the report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Page title.
    pub title: String,
    /// One sentence under the title.
    pub subtitle: String,
    /// The verdict: passed, and why (or why not).
    pub verdict: (bool, String),
    /// Region names, one chart line each.
    pub regions: Vec<String>,
    /// Index in `regions` of the region that fails.
    pub faulty: usize,
    /// GetStatus samples in time order.
    pub samples: Vec<Sample>,
    /// The drill's events.
    pub markers: Vec<Marker>,
    /// The summary table, as (label, value).
    pub summary: Vec<(String, String)>,
    /// The timeline.
    pub timeline: Vec<Line>,
}

/// Colours of the chart's lines: the failing region is always red, so it stands out whichever it is.
const FAULTY_COLOUR: &str = "#d62728";
const OTHER_COLOURS: [&str; 4] = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"];

/// The colour of region `i`.
fn colour(report: &Report, i: usize) -> &'static str {
    if i == report.faulty {
        return FAULTY_COLOUR;
    }
    let rank = if i > report.faulty { i - 1 } else { i };
    OTHER_COLOURS[rank % OTHER_COLOURS.len()]
}

/// Escapes text for HTML and SVG bodies and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A round step for about `target` ticks over `0..max`.
fn tick_step(max: f64, target: f64) -> f64 {
    let raw = (max / target).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|step| *step >= raw).unwrap_or(10.0 * magnitude)
}

/// Intervals `(from, to)` in which region `i` was out of rotation, from the samples.
fn out_intervals(samples: &[Sample], i: usize) -> Vec<(f64, f64)> {
    let mut intervals = Vec::new();
    let mut open: Option<f64> = None;
    for s in samples {
        let Some(r) = s.regions.get(i) else { continue };
        match (r.in_rotation, open) {
            (false, None) => open = Some(s.t),
            (true, Some(from)) => {
                intervals.push((from, s.t));
                open = None;
            }
            _ => {}
        }
    }
    if let (Some(from), Some(last)) = (open, samples.last()) {
        intervals.push((from, last.t));
    }
    intervals
}

/// The chart as an inline SVG element with `id="chart"`.
pub fn chart(report: &Report) -> String {
    const WIDTH: f64 = 960.0;
    const HEIGHT: f64 = 420.0;
    const ROW: f64 = 16.0;
    let left = 56.0;
    let right = WIDTH - 24.0;
    // One label row per marker above the plot, so labels of close events never overlap.
    let top = 12.0 + ROW * report.markers.len() as f64;
    let bottom = HEIGHT - 56.0;

    let t_end = report.samples.iter().map(|s| s.t).chain(report.markers.iter().map(|m| m.t)).fold(1.0_f64, f64::max);
    let x_step = tick_step(t_end, 12.0);
    let x_max = (t_end / x_step).ceil() * x_step;
    let peak = report.samples.iter().flat_map(|s| s.regions.iter().map(|r| r.in_flight)).max().unwrap_or(0);
    let y_step = tick_step((peak as f64).max(2.0), 5.0).max(1.0);
    let y_max = ((peak as f64).max(2.0) / y_step).ceil() * y_step;
    let x = |t: f64| left + (right - left) * (t / x_max);
    let y = |v: f64| bottom - (bottom - top) * (v / y_max);

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="Jobs in flight per region over time">"#
    );
    svg.push_str(r##"<rect x="0" y="0" width="100%" height="100%" fill="#fff"/>"##);

    // Out-of-rotation bands first, so lines are drawn over them.
    for (i, name) in report.regions.iter().enumerate() {
        for (from, to) in out_intervals(&report.samples, i) {
            let _ = write!(
                svg,
                r#"<rect class="out" x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.10"><title>{} out of rotation {from:.1}s to {to:.1}s</title></rect>"#,
                x(from),
                (x(to) - x(from)).max(1.0),
                bottom - top,
                colour(report, i),
                escape(name)
            );
        }
    }

    // Grid and axes.
    let mut v = 0.0;
    while v <= y_max + 1e-9 {
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{right}" y1="{0:.1}" y2="{0:.1}" stroke="#e5e5e5"/><text x="{1}" y="{2:.1}" text-anchor="end" font-size="11" fill="#444">{v}</text>"##,
            y(v),
            left - 6.0,
            y(v) + 4.0
        );
        v += y_step;
    }
    let mut t = 0.0;
    while t <= x_max + 1e-9 {
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{bottom}" y2="{1}" stroke="#444"/><text x="{0:.1}" y="{2}" text-anchor="middle" font-size="11" fill="#444">{t}</text>"##,
            x(t),
            bottom + 4.0,
            bottom + 16.0
        );
        t += x_step;
    }
    let _ = write!(
        svg,
        r##"<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#444"/><line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#444"/>"##
    );
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12" fill="#222">seconds since start</text>"##,
        (left + right) / 2.0,
        bottom + 32.0
    );
    let _ = write!(
        svg,
        r##"<text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle" font-size="12" fill="#222">jobs in flight</text>"##,
        (top + bottom) / 2.0
    );

    // One line per region.
    for (i, name) in report.regions.iter().enumerate() {
        let points: Vec<String> = report
            .samples
            .iter()
            .filter_map(|s| s.regions.get(i).map(|r| format!("{:.1},{:.1}", x(s.t), y(r.in_flight as f64))))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline class="region" data-region="{0}" fill="none" stroke="{1}" stroke-width="2" stroke-linejoin="round" points="{2}"><title>{0}</title></polyline>"#,
            escape(name),
            colour(report, i),
            points.join(" ")
        );
    }

    // Event markers, each label on its own row.
    for (row, marker) in report.markers.iter().enumerate() {
        let mx = x(marker.t);
        let ly = 12.0 + ROW * row as f64 + 10.0;
        let (anchor, lx) = if mx > right - 160.0 { ("end", mx - 4.0) } else { ("start", mx + 4.0) };
        let _ = write!(
            svg,
            r##"<g class="marker" data-marker="{0}"><line x1="{mx:.1}" x2="{mx:.1}" y1="{1:.1}" y2="{bottom}" stroke="#333" stroke-dasharray="4 3"/><text x="{lx:.1}" y="{ly:.1}" text-anchor="{anchor}" font-size="12" fill="#111">{0} ({2:.1}s)</text></g>"##,
            escape(&marker.label),
            ly - 10.0,
            marker.t
        );
    }

    // Legend under the axis title.
    let mut lx = left;
    let ly = HEIGHT - 10.0;
    for (i, name) in report.regions.iter().enumerate() {
        let suffix = if i == report.faulty { " (fails)" } else { "" };
        let _ = write!(
            svg,
            r##"<line x1="{lx}" x2="{0}" y1="{1}" y2="{1}" stroke="{2}" stroke-width="3"/><text x="{3}" y="{ly}" font-size="12" fill="#222">{4}{suffix}</text>"##,
            lx + 18.0,
            ly - 4.0,
            colour(report, i),
            lx + 24.0,
            escape(name)
        );
        lx += 190.0;
    }
    let _ = write!(
        svg,
        r##"<rect x="{lx}" y="{0}" width="18" height="10" fill="{FAULTY_COLOUR}" fill-opacity="0.10" stroke="{FAULTY_COLOUR}" stroke-opacity="0.3"/><text x="{1}" y="{ly}" font-size="12" fill="#222">out of rotation</text>"##,
        ly - 9.0,
        lx + 24.0
    );
    svg.push_str("</svg>");
    svg
}

/// The whole page.
pub fn render(report: &Report) -> String {
    let mut html = String::new();
    let (passed, why) = &report.verdict;
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1000px; color: #111; }}
h1 {{ margin-bottom: 4px; }}
p.sub {{ color: #444; margin-top: 0; }}
.verdict {{ padding: 8px 12px; border-radius: 4px; font-weight: 600; }}
.pass {{ background: #e6f4ea; color: #1e6b34; }}
.fail {{ background: #fce8e6; color: #a50e0e; }}
table.summary {{ border-collapse: collapse; margin: 12px 0 20px; }}
table.summary td {{ padding: 4px 14px 4px 0; border-bottom: 1px solid #eee; vertical-align: top; }}
table.summary td:first-child {{ color: #444; }}
ol.timeline {{ list-style: none; padding: 0; font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 13px; }}
ol.timeline li {{ padding: 2px 0; }}
.t {{ display: inline-block; width: 5.5em; text-align: right; color: #666; margin-right: 1em; }}
.kind {{ display: inline-block; width: 5em; font-weight: 600; }}
.k-PHASE {{ color: #6a1b9a; }} .k-ALERT {{ color: #a50e0e; }} .k-STATUS {{ color: #0b5394; }} .k-MOVE {{ color: #b45f06; }} .k-JOB {{ color: #38761d; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="sub">{subtitle}</p>
<p class="verdict {class}">{verdict}</p>
<h2>Summary</h2>
<table class="summary">
"#,
        title = escape(&report.title),
        subtitle = escape(&report.subtitle),
        class = if *passed { "pass" } else { "fail" },
        verdict = escape(why),
    );
    for (label, value) in &report.summary {
        let _ = writeln!(html, "<tr><td>{}</td><td>{}</td></tr>", escape(label), escape(value));
    }
    html.push_str("</table>\n<h2>Jobs in flight per region</h2>\n");
    html.push_str(&chart(report));
    html.push_str("\n<h2>Timeline</h2>\n<ol class=\"timeline\">\n");
    for line in &report.timeline {
        let _ = writeln!(
            html,
            r#"<li><span class="t">{:.2}s</span><span class="kind k-{}">{}</span>{}</li>"#,
            line.t,
            escape(&line.kind),
            escape(&line.kind),
            escape(&line.text)
        );
    }
    html.push_str("</ol>\n</body>\n</html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, a: u64, b_in: bool) -> Sample {
        Sample {
            t,
            regions: vec![
                RegionSample { in_flight: a, in_rotation: true },
                RegionSample { in_flight: 1, in_rotation: b_in },
            ],
        }
    }

    fn report() -> Report {
        Report {
            title: "Drill <1>".into(),
            subtitle: "s".into(),
            verdict: (true, "ok".into()),
            regions: vec!["north".into(), "west".into()],
            faulty: 1,
            samples: vec![sample(0.0, 0, true), sample(5.0, 3, false), sample(9.0, 2, true)],
            markers: vec![Marker { t: 4.0, label: "stall".into() }, Marker { t: 8.5, label: "re-admission".into() }],
            summary: vec![("jobs lost".into(), "0".into())],
            timeline: vec![Line { t: 4.0, kind: "PHASE".into(), text: "a & b".into() }],
        }
    }

    #[test]
    fn the_page_is_self_contained_and_escapes_what_it_shows() {
        let html = render(&report());
        assert!(html.contains("<svg id=\"chart\""));
        assert!(html.contains("Drill &lt;1&gt;") && html.contains("a &amp; b"));
        assert!(!html.contains("src=") && !html.contains("href="), "nothing is fetched");
    }

    #[test]
    fn every_marker_and_region_is_drawn_and_the_failing_region_is_red() {
        let svg = chart(&report());
        assert!(svg.contains(r#"data-marker="stall""#) && svg.contains(r#"data-marker="re-admission""#));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(&format!(r#"data-region="west" fill="none" stroke="{FAULTY_COLOUR}""#)));
    }

    #[test]
    fn time_out_of_rotation_is_taken_from_the_samples() {
        assert_eq!(out_intervals(&report().samples, 1), vec![(5.0, 9.0)]);
        assert!(out_intervals(&report().samples, 0).is_empty());
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(tick_step(60.0, 12.0), 5.0);
        assert_eq!(tick_step(7.0, 5.0), 2.0);
        assert_eq!(tick_step(130.0, 12.0), 20.0);
    }
}
