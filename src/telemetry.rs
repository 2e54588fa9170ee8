//! Logging setup. payguard logs through `tracing`, one line per request, in a human or JSON
//! format. What is logged is chosen at the call sites, and none of them passes headers, bodies
//! or API keys: the safest secret filter is never handing the secret to the logger.

use tracing_subscriber::EnvFilter;

/// How log lines are written: for a terminal, or one JSON object per line for a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured level.
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(level))?;
    // Colours only on a terminal: escape codes in a log file or pipeline are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
