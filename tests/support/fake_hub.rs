//! Starts `tests/hub/fake_hub.py`, the Hugging Face Hub stand-in that serves the repositories
//! under a folder (`<root>/models/<id>/<revision>/`, `<root>/datasets/...`), and logs every request.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A fake Hub serving `root`, logging requests to `log`; its `HF_ENDPOINT`. Stopped when dropped.
pub(crate) struct FakeHub {
    pub(crate) endpoint: String,
    child: Child,
}

impl FakeHub {
    pub(crate) fn start(python: &str, root: &Path, log: &Path) -> FakeHub {
        let port_file = root.with_extension("port");
        let _ = std::fs::remove_file(&port_file);
        let child = Command::new(python)
            .arg(crate::support::root().join("tests/hub/fake_hub.py"))
            .arg(root)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--log")
            .arg(log)
            .spawn()
            .expect("the fake Hub starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                break port;
            }
            assert!(Instant::now() < deadline, "the fake Hub did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        FakeHub { endpoint: format!("http://127.0.0.1:{}", port.trim()), child }
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
