//! The operators' status page: GetStatus's JSON rendered as one self-contained HTML page (inline CSS, no
//! script, nothing fetched), which reloads itself every few seconds and fits a phone screen. Each account's
//! card names its provider, and says so when MRU scaling is off because the provider has no reserved units.
//!
//! It renders the JSON answer rather than the rows behind it, so the page can never show something the
//! JSON does not, and fields GetStatus gains later appear (under "More") without a change here.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// Seconds between reloads: often enough to follow a failover, rare enough to cost nothing.
pub const REFRESH_SECS: u32 = 5;

/// Top-level fields of the status that have their own section; any other appears under "More".
const KNOWN: &[&str] = &["accountsInRotation", "accounts", "recentAlerts", "alerts", "lastSweep"];

/// Whether an `Accept` header asks for HTML before JSON. JSON stays the default: a missing header, `*/*`
/// or one listing `application/json` first gets JSON.
pub fn wants_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let mut best: Option<(f32, bool)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let quality =
            parts.filter_map(|p| p.strip_prefix("q=")).find_map(|q| q.trim().parse::<f32>().ok()).unwrap_or(1.0);
        let html = match media.as_str() {
            "text/html" | "application/xhtml+xml" => true,
            "application/json" => false,
            _ => continue,
        };
        // Ties go to the earlier entry, so `text/html, application/json` is HTML and the reverse is JSON.
        if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
            best = Some((quality, html));
        }
    }
    best.is_some_and(|(_, html)| html)
}

/// The page for the GetStatus answer `status`, as of `now`.
pub fn render(status: &Value, now: DateTime<Utc>) -> String {
    let accounts = status["accounts"].as_array().map(Vec::as_slice).unwrap_or_default();
    let in_rotation = status["accountsInRotation"].as_u64().unwrap_or(0);
    let mut page = String::with_capacity(8 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>ams-failover: {in_rotation} of {} in rotation</title><style>{STYLE}</style></head><body>\
         <header><h1>ams-failover</h1><p id=\"summary\" class=\"{}\">{in_rotation} of {} accounts in rotation</p>\
         <p class=\"muted\">as of {} · reloads every {REFRESH_SECS} s</p></header><main>",
        accounts.len(),
        if in_rotation == 0 {
            "bad"
        } else if (in_rotation as usize) < accounts.len() {
            "warn"
        } else {
            "ok"
        },
        accounts.len(),
        now.format("%Y-%m-%d %H:%M:%S UTC"),
    );
    for account in accounts {
        account_card(&mut page, account);
    }
    alerts_section(&mut page, status);
    sweep_section(&mut page, &status["lastSweep"]);
    more_section(&mut page, status);
    page.push_str("</main></body></html>\n");
    page
}

fn account_card(page: &mut String, account: &Value) {
    let name = text(&account["name"]);
    let in_rotation = account["inRotation"] == Value::Bool(true);
    let _ = write!(
        page,
        "<section class=\"account {}\" data-account=\"{}\"><h2>{} <span class=\"region\">{}</span>",
        if in_rotation { "in" } else { "out" },
        esc(&name),
        esc(&name),
        esc(&text(&account["region"])),
    );
    // Which service the account runs on, now that Media Services' successors sit in the same rotation.
    if let Some(provider) = account["provider"].as_str() {
        let _ = write!(page, " <span class=\"provider\">{}</span>", esc(provider));
    }
    page.push_str("</h2>");
    if in_rotation {
        page.push_str("<p class=\"state ok\">in rotation</p>");
    } else {
        let removed = &account["removed"];
        let _ = write!(
            page,
            "<p class=\"state bad\">out of rotation</p><dl class=\"removal\"><dt>reason</dt><dd class=\"reason\">{}</dd>\
             <dt>since</dt><dd>{}</dd><dt>probe after</dt><dd>{}</dd>",
            esc(&text(&removed["reason"])),
            esc(&time(&removed["since"])),
            esc(&time(&removed["until"])),
        );
        if let Some(secs) = removed["cooldownSecs"].as_u64() {
            let _ = write!(page, "<dt>cool-down</dt><dd>{secs} s</dd>");
        }
        page.push_str("</dl>");
    }

    // An API token about to expire (or expired) is the one thing here only a person can fix.
    if let Some(warning) = account["credential"]["warning"].as_str() {
        let _ = write!(page, "<p class=\"credential warn\">{}</p>", esc(warning));
    }
    let _ = write!(page, "<p class=\"inflight\">in flight <b>{}</b></p>", account["inFlight"].as_u64().unwrap_or(0));
    let by_state: Vec<(&String, &Value)> = account["activeByState"]
        .as_object()
        .map(|m| m.iter().filter(|(_, n)| n.as_u64().is_some_and(|n| n > 0)).collect())
        .unwrap_or_default();
    if !by_state.is_empty() {
        page.push_str("<ul class=\"states\">");
        for (state, count) in by_state {
            let _ = write!(page, "<li>{} <b>{}</b></li>", esc(state), count.as_u64().unwrap_or(0));
        }
        page.push_str("</ul>");
    }

    let mru = &account["mru"];
    if let Some(note) = mru["note"].as_str().filter(|_| mru["scaling"] == Value::Bool(false)) {
        // No reserved units to show: say why instead of printing a maximum that means nothing.
        let _ = write!(page, "<p class=\"mru off\">{}</p></section>", esc(note));
        return;
    }
    let _ = write!(page, "<p class=\"mru\">MRUs ({})", esc(&text(&mru["mode"])));
    match mru["current"].as_u64() {
        Some(current) => {
            let _ = write!(page, ": <b>{current}</b> of at most {}", mru["max"].as_u64().unwrap_or(0));
        }
        None => {
            let _ = write!(page, ": at most {}", mru["max"].as_u64().unwrap_or(0));
        }
    }
    let _ = write!(page, ", {} units in flight", mru["unitsInFlight"].as_u64().unwrap_or(0));
    if mru["saturated"] == Value::Bool(true) {
        page.push_str(" <span class=\"bad\">saturated</span>");
    }
    page.push_str("</p></section>");
}

/// Recent alerts, when the status carries them (`recentAlerts` or `alerts`, newest first as given).
fn alerts_section(page: &mut String, status: &Value) {
    let Some(alerts) = status["recentAlerts"].as_array().or_else(|| status["alerts"].as_array()) else { return };
    page.push_str("<section id=\"alerts\"><h2>Recent alerts</h2>");
    if alerts.is_empty() {
        page.push_str("<p class=\"muted\">none</p>");
    } else {
        page.push_str("<ul>");
        for alert in alerts {
            let _ = write!(
                page,
                "<li><b>{}</b> {} <span class=\"muted\">{}</span><br>{}</li>",
                esc(&text(&alert["type"])),
                esc(&text(&alert["account"])),
                esc(&time(&alert["time"])),
                esc(&text(&alert["reason"])),
            );
        }
        page.push_str("</ul>");
    }
    page.push_str("</section>");
}

/// What the last sweep did, when the status carries it (for example how many jobs it repaired).
fn sweep_section(page: &mut String, sweep: &Value) {
    let Some(fields) = sweep.as_object() else { return };
    page.push_str("<section id=\"sweep\"><h2>Last sweep</h2>");
    definitions(page, fields);
    page.push_str("</section>");
}

/// Every other top-level field, so nothing GetStatus says is hidden from the page.
fn more_section(page: &mut String, status: &Value) {
    let Some(all) = status.as_object() else { return };
    let rest: Map<String, Value> =
        all.iter().filter(|(k, _)| !KNOWN.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    if rest.is_empty() {
        return;
    }
    page.push_str("<section id=\"more\"><h2>More</h2>");
    definitions(page, &rest);
    page.push_str("</section>");
}

fn definitions(page: &mut String, fields: &Map<String, Value>) {
    page.push_str("<dl>");
    for (key, value) in fields {
        let shown = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = write!(page, "<dt>{}</dt><dd>{}</dd>", esc(key), esc(&shown));
    }
    page.push_str("</dl>");
}

/// A string field, or `-`.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// An RFC 3339 time to the second, in UTC; anything else as it is.
fn time(v: &Value) -> String {
    match v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()) {
        Some(t) => t.with_timezone(&Utc).format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => text(v),
    }
}

/// Escapes text for HTML content and quoted attributes: account names and reasons come from settings and
/// from Media Services error messages.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One column of cards on a phone, a grid on a wider screen; system fonts, no external resources.
const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:16px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;background:#f4f5f7;color:#1d2330}\
header{padding:12px 16px;background:#1d2330;color:#fff}\
header h1{margin:0;font-size:1.2em}header p{margin:4px 0 0}\
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:12px;padding:12px}\
section{background:#fff;border-radius:8px;padding:12px 14px;border-left:6px solid #8a94a6;overflow-wrap:anywhere}\
section.in{border-left-color:#2e9d5b}section.out{border-left-color:#d64545}\
h2{margin:0 0 6px;font-size:1.05em}.region{font-weight:normal;color:#5a6478}\
.provider{font-size:.75em;font-weight:normal;padding:1px 6px;border-radius:4px;background:#e7eaf0;color:#5a6478}\
p{margin:4px 0}.muted{color:#8a94a6}header .muted{color:#b8c0cf}\
.ok{color:#2e9d5b}.warn{color:#c77c02}.bad{color:#d64545}header .ok{color:#7be0a4}header .warn{color:#ffc861}header .bad{color:#ff8f8f}\
.state{font-weight:bold}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;margin:6px 0}dt{color:#5a6478}dd{margin:0}\
ul{margin:4px 0;padding-left:18px}ul.states{display:flex;flex-wrap:wrap;gap:4px 14px;padding:0;list-style:none}\
";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default()
    }

    #[test]
    fn json_stays_the_default_and_html_is_chosen_only_when_asked_for_first() {
        assert!(!wants_html(None));
        assert!(!wants_html(Some("*/*")));
        assert!(!wants_html(Some("application/json")));
        assert!(!wants_html(Some("application/json, text/html")));
        assert!(wants_html(Some("text/html")));
        assert!(wants_html(Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")));
        assert!(wants_html(Some("application/json;q=0.5, text/html")));
        assert!(!wants_html(Some("text/html;q=0, application/json")));
    }

    #[test]
    fn an_mkio_account_shows_its_token_warning_and_no_reserved_units() {
        let status = json!({"accountsInRotation": 1, "accounts": [{"name": "mkwe", "region": "westeurope",
            "inRotation": true, "inFlight": 0, "activeByState": {}, "provider": "mkio",
            "mru": {"mode": "automatic", "scaling": false, "unitsInFlight": 0,
                    "note": "mkio has no reserved units: MRU scaling is off"},
            "credential": {"setting": "MKIO_TOKEN_MKWE", "warning": "the API token in MKIO_TOKEN_MKWE expires <soon>"}}]});
        let page = render(&status, Utc::now());
        assert!(page.contains("expires &lt;soon&gt;"), "{page}");
        assert!(page.contains("no reserved units") && !page.contains("MRUs (none)"), "{page}");
    }

    #[test]
    fn the_page_shows_each_account_its_removal_reason_states_and_mrus_escaped() {
        let status = json!({
            "accountsInRotation": 1,
            "accounts": [
                {"name": "amswest", "region": "westeurope", "inRotation": true, "removed": null, "inFlight": 3,
                 "activeByState": {"Queued": 1, "Processing": 2, "Scheduled": 0},
                 "mru": {"mode": "managed", "max": 10, "current": 4, "unitsInFlight": 3, "saturated": false}},
                {"name": "amsnorth", "region": "northeurope", "inRotation": false, "inFlight": 0, "activeByState": {},
                 "removed": {"since": "2026-01-02T03:00:00.123456789Z", "until": "2026-01-02T03:30:00Z",
                             "reason": "2 jobs stuck <Scheduled>", "cooldownSecs": 1800},
                 "mru": {"mode": "automatic", "max": 10, "unitsInFlight": 0}}
            ]
        });
        let page = render(&status, now());
        assert!(page.contains("1 of 2 accounts in rotation"));
        assert!(page.contains("as of 2026-01-02 03:04:05 UTC"));
        assert!(page.contains("data-account=\"amswest\"") && page.contains("data-account=\"amsnorth\""));
        assert!(page.contains("2 jobs stuck &lt;Scheduled&gt;"), "the reason is shown, escaped");
        assert!(page.contains("2026-01-02 03:00:00 UTC"), "times to the second");
        assert!(page.contains("Processing <b>2</b>") && !page.contains("Scheduled <b>0</b>"));
        assert!(page.contains("<b>4</b> of at most 10"));
        assert!(page.contains(&format!("http-equiv=\"refresh\" content=\"{REFRESH_SECS}\"")));
        assert!(page.contains("name=\"viewport\""));
        assert!(!page.contains("<script") && !page.contains("<link") && !page.contains("src="), "self-contained");
    }

    #[test]
    fn each_card_names_its_provider_and_says_when_mru_scaling_is_off_for_it() {
        let status = json!({
            "accountsInRotation": 2,
            "accounts": [
                {"name": "rmswest", "region": "westeurope", "provider": "rms", "inRotation": true, "inFlight": 0,
                 "activeByState": {}, "mru": {"mode": "automatic", "scaling": false, "unitsInFlight": 0,
                 "note": "rms has no reserved units: MRU scaling is off"}},
                {"name": "amsnorth", "region": "northeurope", "provider": "ams", "inRotation": true, "inFlight": 0,
                 "activeByState": {}, "mru": {"mode": "automatic", "scaling": false, "max": 10, "unitsInFlight": 0}}
            ]
        });
        let page = render(&status, now());
        assert!(
            page.contains("<span class=\"provider\">rms</span>")
                && page.contains("<span class=\"provider\">ams</span>")
        );
        assert!(page.contains("rms has no reserved units: MRU scaling is off"));
        assert_eq!(page.matches("MRUs (automatic)").count(), 1, "only the account with reserved units shows MRUs");
    }

    #[test]
    fn alerts_the_last_sweep_and_unknown_fields_are_shown_when_the_status_has_them() {
        let status = json!({
            "accountsInRotation": 0, "accounts": [],
            "recentAlerts": [{"type": "RegionRemoved", "account": "amswest", "time": "2026-01-02T03:00:00Z",
                              "reason": "stalled"}],
            "lastSweep": {"repairedJobs": 2},
            "somethingNew": "shown"
        });
        let page = render(&status, now());
        assert!(page.contains("RegionRemoved") && page.contains("stalled"));
        assert!(page.contains("repairedJobs") && page.contains("<dd>2</dd>"));
        assert!(page.contains("somethingNew") && page.contains("shown"));
        let bare = render(&json!({"accountsInRotation": 0, "accounts": []}), now());
        assert!(!bare.contains("id=\"alerts\"") && !bare.contains("id=\"more\""));
    }
}
