//! A moto server (the AWS API: S3, SageMaker, Secrets Manager) for the tests that need one: the
//! one `.ci/run` started (`TUNEC_TEST_MOTO_URL`), or one of the test's own, stopped when dropped,
//! optionally recording every request it receives (`MOTO_ENABLE_RECORDING`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Moto {
    pub(crate) url: String,
    child: Option<Child>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `tunec` (or boto3) process configured for local servers only: moto's test credentials, no
/// profile, no shared files, no instance metadata, and no endpoint for every service at once (each
/// test names its per-service endpoints).
pub(crate) fn test_credentials(command: &mut Command) {
    command
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE");
}

impl Moto {
    /// `.ci/run`'s server, else one of this test's own.
    pub(crate) fn shared(python: &str) -> Moto {
        match std::env::var("TUNEC_TEST_MOTO_URL") {
            Ok(url) if !url.is_empty() => Moto { url: url.trim_end_matches('/').to_owned(), child: None },
            _ => Moto::own(python, None),
        }
    }

    /// A server of this test's own on a free port, recording every request into `recording`.
    pub(crate) fn own(python: &str, recording: Option<&Path>) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut command = Command::new(Path::new(python).with_file_name("moto_server"));
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(recording) = recording {
            command.env("MOTO_ENABLE_RECORDING", "true").env("MOTO_RECORDER_FILEPATH", recording);
        }
        let child = command.spawn().expect("moto_server starts (it is in the test virtualenv)");
        let moto = Moto { url: format!("http://127.0.0.1:{port}"), child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto does not listen on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// Makes a secret named `name` holding `value` with boto3 (the way a user would, with the
    /// AWS CLI), and returns its ARN.
    pub(crate) fn create_secret(&self, python: &str, name: &str, value: &str) -> String {
        let out = Command::new(python)
            .args(["-c", "import boto3, sys\nsm = boto3.client('secretsmanager', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\nprint(sm.create_secret(Name=sys.argv[2], SecretString=sys.argv[3])['ARN'])"])
            .args([&self.url, name, value])
            .output()
            .expect("python runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}
