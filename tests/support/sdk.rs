//! The official Stripe SDKs as child processes, for tests/sdk.rs and tests/sdk_errors.rs: each
//! runs a small script in tests/sdk/<name>/ against payguard and prints JSON lines.
//!
//! A missing interpreter or SDK fails the test with the command that installs it: CI must not
//! pass by skipping. tests/run.sh installs all three.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sdk {
    /// npm `stripe`, pinned by tests/sdk/node/package-lock.json.
    Node,
    /// PyPI `stripe`, pinned by tests/run.sh, with the `python3` on PATH.
    Python,
    /// Debian's `python3-stripe` (5.0.0), with Debian's own `/usr/bin/python3`.
    Debian,
}

impl Sdk {
    fn dir(self) -> PathBuf {
        let sub = match self {
            Sdk::Node => "node",
            Sdk::Python => "python",
            Sdk::Debian => "debian",
        };
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sdk")
            .join(sub)
    }

    /// The interpreter, the script, and how to install what they need.
    fn command(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Sdk::Node => ("node", "sdk.mjs", "npm ci --prefix tests/sdk/node"),
            Sdk::Python => ("python3", "sdk.py", "pip install stripe==16.1.0"),
            Sdk::Debian => (
                "/usr/bin/python3",
                "sdk.py",
                "apt-get install python3-stripe",
            ),
        }
    }

    /// Runs the SDK's script against payguard on `port`; returns its JSON lines.
    pub async fn run(self, port: u16, args: &[&str]) -> Vec<Value> {
        let (program, script, install) = self.command();
        if self == Sdk::Node {
            assert!(
                self.dir().join("node_modules/stripe/package.json").exists(),
                "stripe-node is not installed: run `{install}` (tests/run.sh does)"
            );
        }
        let run = tokio::process::Command::new(program)
            .arg(script)
            .arg(port.to_string())
            .args(args)
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .unwrap_or_else(|_| panic!("{program} {script} {args:?} ran over two minutes"))
            .unwrap_or_else(|e| {
                panic!("cannot run {program} ({e}): `{install}` (tests/run.sh does)")
            });
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{program} {script} {args:?} failed ({}); is the SDK installed (`{install}`)?\n\
             stdout:\n{stdout}\nstderr:\n{stderr}",
            output.status
        );
        stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\nstderr:\n{stderr}"))
            })
            .collect()
    }
}
