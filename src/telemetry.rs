//! Logging. The Functions host logs the handler's stdout at Information and its stderr at Error, so
//! warnings and errors go to stderr and everything else to stdout. `LOG_FORMAT=json` gives one JSON object
//! per line for log analytics; the default is readable text. `RUST_LOG` filters (default `info`).

use tracing::Level;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = std::io::stderr.with_max_level(Level::WARN).or_else(std::io::stdout);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(false);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().with_current_span(true).with_span_list(true).init();
    } else {
        builder.init();
    }
}
