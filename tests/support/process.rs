//! What the tests that interrupt `tunec run` share: replayable random delays, a child's stdout as
//! a stream of lines, and a child killed with SIGKILL unless it ends first.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A small deterministic generator (64-bit LCG), so the kill times are random but replayable.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The child's stdout, line by line, read on a thread (join it after the child ends).
pub(crate) fn stdout_lines(child: &mut Child) -> (mpsc::Receiver<String>, JoinHandle<()>) {
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (rx, reader)
}

/// Waits up to `delay` for the child to end; kills it with SIGKILL otherwise. Returns its status
/// when it ended on its own, `None` when it was killed.
pub(crate) fn kill_after(child: &mut Child, delay: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < delay {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    None
}
