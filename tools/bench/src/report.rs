//! The benchmark's results: the table it prints (every figure with its reference, ratio and goal), the
//! JSON, and an HTML page with the throughput plots.

use crate::run::Load;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;

/// Round trips of one sequential SubmitJob, counted by the proxies.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoundTrips {
    /// Table Storage requests per job.
    pub table: f64,
    /// Media Services (ARM) requests per job.
    pub arm: f64,
    /// Table answers 412 per job.
    pub conflicts: f64,
}

/// SubmitJob at one concurrency.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SubmitLevel {
    /// Accounts the handler had.
    pub accounts: usize,
    /// The load.
    pub load: Load,
    /// Table answers 412 per job.
    pub conflicts_per_job: f64,
}

/// OnJobStateChange at one concurrency.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventLevel {
    /// The load, per event.
    pub load: Load,
    /// Table answers 412 per event.
    pub conflicts_per_event: f64,
    /// Table requests per event (with the outcome notification's, which the last event of a job starts).
    pub round_trips: f64,
}

/// One sweep.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sweep {
    /// Median time of five, ms.
    pub ms: f64,
    /// Table requests of one.
    pub table: f64,
    /// ARM requests of one.
    pub arm: f64,
}

/// Cold start.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ColdStart {
    /// Exec to the first answer on `/`, the handler, median.
    pub handler_p50_ms: f64,
    /// The same for axum answering `/` and nothing else.
    pub floor_p50_ms: f64,
    /// Table calls the handler makes before it answers.
    pub start_table_calls: u64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Results {
    /// Where it ran.
    pub machine: String,
    /// How long the run took, s.
    pub seconds: f64,
    /// Raw Azurite entity group transactions by concurrency.
    pub raw: Vec<Load>,
    /// The floor SubmitJob, made directly.
    pub floor: Load,
    /// The floor's calls and why each is needed.
    pub floor_calls: Vec<Value>,
    /// SubmitJob sequential.
    pub sequential: Load,
    /// Its round trips.
    pub round_trips: RoundTrips,
    /// SubmitJob by concurrency and accounts.
    pub submit: Vec<SubmitLevel>,
    /// OnJobStateChange by concurrency.
    pub events: Vec<EventLevel>,
    /// Finished jobs behind the second sweep.
    pub history: usize,
    /// The sweep with no history.
    pub sweep_empty: Sweep,
    /// The sweep with `history` finished jobs.
    pub sweep_history: Sweep,
    /// Cold start.
    pub cold_start: ColdStart,
}

impl Results {
    fn raw_at(&self, c: usize) -> f64 {
        self.raw.iter().find(|l| l.concurrency == c).map_or(0.0, |l| l.rate)
    }

    fn submit_at(&self, accounts: usize, c: usize) -> Option<&SubmitLevel> {
        self.submit.iter().find(|s| s.accounts == accounts && s.load.concurrency == c)
    }

    fn events_at(&self, c: usize) -> f64 {
        self.events.iter().find(|e| e.load.concurrency == c).map_or(0.0, |e| e.load.rate)
    }
}

/// A goal: the ratio and whether it is met.
struct Row {
    what: String,
    handler: String,
    reference: String,
    ratio: f64,
    goal: String,
    met: bool,
}

impl Row {
    /// A goal the ratio must not exceed.
    fn at_most(what: &str, handler: String, reference: String, ratio: f64, bound: f64) -> Row {
        Row { what: what.into(), handler, reference, ratio, goal: format!("<= {bound:.1}"), met: ratio <= bound }
    }

    /// A goal the ratio must reach.
    fn at_least(what: &str, handler: String, reference: String, ratio: f64, bound: f64) -> Row {
        Row { what: what.into(), handler, reference, ratio, goal: format!(">= {bound:.1}"), met: ratio >= bound }
    }
}

/// `a` against `b`, with an empty reference counting as a tiny one rather than dividing by zero.
fn ratio(a: f64, b: f64) -> f64 {
    a / b.max(1e-9)
}

fn rows(r: &Results) -> Vec<Row> {
    let floor_trips = super::floor::CALLS.len() as f64;
    let trips = r.round_trips.table + r.round_trips.arm;
    let rate = |a, c| r.submit_at(a, c).map_or(0.0, |s| s.load.rate);
    // Events at `c` deliveries against raw transactions at `c` clients.
    let events = |c: usize, what: &str, clients: &str, bound: f64| {
        Row::at_least(
            what,
            format!("{:.0} events/s", r.events_at(c)),
            format!("raw transactions, {clients}: {:.0}/s", r.raw_at(c)),
            ratio(r.events_at(c), r.raw_at(c)),
            bound,
        )
    };
    let sweep_ratio = ratio(r.sweep_history.ms, r.sweep_empty.ms);
    vec![
        Row::at_most(
            "SubmitJob round trips",
            format!("{trips:.1} ({:.1} Table + {:.1} ARM)", r.round_trips.table, r.round_trips.arm),
            format!("floor {floor_trips:.0} (see below)"),
            ratio(trips, floor_trips),
            1.3,
        ),
        Row::at_most(
            "SubmitJob p99, sequential",
            format!("{:.1} ms", r.sequential.p99_ms),
            format!("floor calls made directly: {:.1} ms", r.floor.p99_ms),
            ratio(r.sequential.p99_ms, r.floor.p99_ms),
            1.3,
        ),
        Row::at_least(
            "SubmitJob, one account, 32 clients against 1",
            format!("{:.0} jobs/s", rate(1, 32)),
            format!("{:.0} jobs/s at 1 client", rate(1, 1)),
            ratio(rate(1, 32), rate(1, 1)),
            1.0,
        ),
        events(1, "OnJobStateChange, 1 delivery at a time", "1 client", 0.5),
        events(32, "OnJobStateChange, 32 at a time", "32 clients", 0.3),
        Row {
            what: format!("Sweep with {} finished jobs", r.history),
            handler: format!("{:.1} ms, {:.0} Table requests", r.sweep_history.ms, r.sweep_history.table),
            reference: format!("no history: {:.1} ms, {:.0} Table requests", r.sweep_empty.ms, r.sweep_empty.table),
            ratio: sweep_ratio,
            goal: "<= 1.5, same requests".into(),
            met: sweep_ratio <= 1.5 && r.sweep_history.table <= r.sweep_empty.table,
        },
        Row {
            what: "Cold start, exec to the first answer on /".into(),
            handler: format!("{:.1} ms ({} Table calls)", r.cold_start.handler_p50_ms, r.cold_start.start_table_calls),
            reference: format!("axum alone: {:.1} ms", r.cold_start.floor_p50_ms),
            ratio: ratio(r.cold_start.handler_p50_ms, r.cold_start.floor_p50_ms),
            goal: "handler < 20 ms".into(),
            met: r.cold_start.handler_p50_ms < 20.0,
        },
    ]
}

/// The printed report: the goals, then every level measured.
pub fn table(r: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nMeasured on {} in {:.0} s (release build, Azurite and the emulator on the same machine)\n",
        r.machine, r.seconds
    );
    let _ = writeln!(out, "| what | handler | reference | ratio | goal | met |\n| --- | --- | --- | --- | --- | --- |");
    for row in rows(r) {
        let met = if row.met { "yes" } else { "no" };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {} | {met} |",
            row.what, row.handler, row.reference, row.ratio, row.goal
        );
    }
    let _ =
        writeln!(out, "\nSubmitJob by concurrency (jobs/s, p99, 412s per job, refused) against raw transactions/s:\n");
    let _ = writeln!(out, "| clients | one account | two accounts | raw Azurite |\n| --- | --- | --- | --- |");
    for c in [1, 4, 16, 32] {
        let cell = |a| {
            r.submit_at(a, c).map_or("-".to_owned(), |s| {
                format!(
                    "{:.0}/s, p99 {:.0} ms, {:.2}, {}",
                    s.load.rate, s.load.p99_ms, s.conflicts_per_job, s.load.failures
                )
            })
        };
        let _ = writeln!(out, "| {c} | {} | {} | {:.0}/s |", cell(1), cell(2), r.raw_at(c));
    }
    let _ = writeln!(out, "\nOnJobStateChange by concurrency, one account:\n");
    let _ = writeln!(
        out,
        "| deliveries | events/s | p99 per event | Table round trips per event | 412s per event | raw Azurite |\n| --- | --- | --- | --- | --- | --- |"
    );
    for e in &r.events {
        let c = e.load.concurrency;
        let _ = writeln!(
            out,
            "| {c} | {:.0} | {:.1} ms | {:.1} | {:.2} | {:.0}/s |",
            e.load.rate,
            e.load.p99_ms,
            e.round_trips,
            e.conflicts_per_event,
            r.raw_at(c)
        );
    }
    let _ = writeln!(
        out,
        "\nThe floor of one SubmitJob ({} calls, made directly: p50 {:.1} ms, p99 {:.1} ms):\n",
        r.floor_calls.len(),
        r.floor.p50_ms,
        r.floor.p99_ms
    );
    for (i, call) in r.floor_calls.iter().enumerate() {
        let _ =
            writeln!(out, "{}. {}: {}", i + 1, call["call"].as_str().unwrap_or(""), call["why"].as_str().unwrap_or(""));
    }
    out
}

/// A plotted line: its name, colour, and (concurrency, rate) points.
type Series<'a> = (&'a str, &'a str, Vec<(usize, f64)>);

/// One SVG line plot of rate against concurrency.
fn plot(title: &str, series: &[Series]) -> String {
    let (w, h, pad) = (560.0, 300.0, 48.0);
    let max_y = series.iter().flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y)).fold(1.0_f64, f64::max) * 1.1;
    let x = |c: usize| pad + (c as f64).log2() / 5.0 * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v / max_y * (h - 2.0 * pad);
    let mut svg = format!(
        "<svg viewBox='0 0 {w} {h}' width='{w}' height='{h}'><text x='{pad}' y='20' font-size='13' font-weight='bold'>{title}</text>"
    );
    let _ = write!(svg, "<line x1='{pad}' y1='{}' x2='{}' y2='{}' stroke='#888'/>", h - pad, w - pad, h - pad);
    let _ = write!(svg, "<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{}' stroke='#888'/>", h - pad);
    for c in [1, 2, 4, 8, 16, 32] {
        let _ = write!(svg, "<text x='{}' y='{}' font-size='11' text-anchor='middle'>{c}</text>", x(c), h - pad + 16.0);
    }
    for i in 0..=4 {
        let v = max_y * f64::from(i) / 4.0;
        let _ =
            write!(svg, "<text x='{}' y='{}' font-size='11' text-anchor='end'>{v:.0}</text>", pad - 4.0, y(v) + 4.0);
    }
    for (n, (name, color, points)) in series.iter().enumerate() {
        let line: Vec<String> = points.iter().map(|(c, v)| format!("{:.1},{:.1}", x(*c), y(*v))).collect();
        let _ = write!(svg, "<polyline fill='none' stroke='{color}' stroke-width='2' points='{}'/>", line.join(" "));
        for (c, v) in points {
            let _ = write!(svg, "<circle cx='{:.1}' cy='{:.1}' r='3' fill='{color}'/>", x(*c), y(*v));
        }
        let _ = write!(
            svg,
            "<text x='{}' y='{}' font-size='12' fill='{color}'>{name}</text>",
            w - pad - 150.0,
            pad + 14.0 * n as f64
        );
    }
    svg.push_str("<text x='280' y='296' font-size='11' text-anchor='middle'>concurrent clients</text></svg>");
    svg
}

/// The HTML page: the two plots and the printed table.
pub fn html(r: &Results, table: &str) -> String {
    let raw: Vec<(usize, f64)> = r.raw.iter().map(|l| (l.concurrency, l.rate)).collect();
    let submit =
        |a| r.submit.iter().filter(|s| s.accounts == a).map(|s| (s.load.concurrency, s.load.rate)).collect::<Vec<_>>();
    let events: Vec<(usize, f64)> = r.events.iter().map(|e| (e.load.concurrency, e.load.rate)).collect();
    let submit_plot = plot(
        "SubmitJob (jobs/s) and raw Azurite (transactions/s)",
        &[
            ("one account", "#c0392b", submit(1)),
            ("two accounts", "#2471a3", submit(2)),
            ("raw Azurite", "#777", raw.clone()),
        ],
    );
    let event_plot = plot(
        "OnJobStateChange (events/s) and raw Azurite (transactions/s)",
        &[("events, one account", "#1e8449", events), ("raw Azurite", "#777", raw)],
    );
    let escaped = table.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        "<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>\
         <title>ams-failover benchmark</title><style>body{{font-family:system-ui,sans-serif;margin:1.5em;max-width:60em}}\
         pre{{background:#f4f4f4;padding:1em;overflow-x:auto}}</style></head><body><h1>ams-failover benchmark</h1>\
         {submit_plot}<br>{event_plot}<pre>{escaped}</pre></body></html>"
    )
}

/// The machine, for the record: CPU model and count.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|rest| rest.split(':').nth(1)))
        .map_or("unknown CPU".to_owned(), |m| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cores} cores, {model}")
}
