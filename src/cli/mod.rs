//! The `payguard` command's subcommands that talk to a sidecar or run one for show, kept out
//! of `main.rs` so it stays the sidecar's entry point.

pub mod demo;
pub mod stats;
pub mod unresolved;

/// Runs a command's body on a single-threaded runtime (these commands make one request at a
/// time); a runtime that cannot start is reported like any other failure.
pub fn block_on<F: std::future::Future>(body: F) -> Result<F::Output, std::process::ExitCode> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Ok(runtime.block_on(body)),
        Err(e) => {
            eprintln!("payguard: {e}");
            Err(std::process::ExitCode::FAILURE)
        }
    }
}
