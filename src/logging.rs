//! Log setup: logfmt (the Prometheus ecosystem's default) or JSON, to stderr.

use tracing::level_filters::LevelFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Called once from `main`; a second call
/// (as in tests) is a no-op.
pub fn init(level: LevelFilter, format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let registry = tracing_subscriber::registry().with(level);
    let _ = match format {
        LogFormat::Logfmt => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(tracing_logfmt::EventsFormatter::default())
                    .fmt_fields(tracing_logfmt::FieldsFormatter::default())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(false),
            )
            .try_init(),
    };
}
