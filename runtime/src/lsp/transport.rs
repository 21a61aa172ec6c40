//! The stdio transport: LSP framing (`Content-Length` headers) between stdin/stdout and an
//! in-memory `lsp_server::Connection`.
//!
//! lsp-server has a stdio transport of its own, but its reader thread stops at the first malformed
//! header or payload, which ends the session. This one skips what it cannot read (a header line
//! without a length, a body that is not a JSON-RPC message), says so on stderr and goes on, so a
//! confused client cannot take the server down. It stops at the end of input, after `exit`, or
//! when the server side of the connection is dropped.

use lsp_server::{Connection, Message};
use std::io::{BufRead, Write};
use std::thread::JoinHandle;

/// The reader and writer threads.
pub(super) struct IoThreads {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl IoThreads {
    /// Waits for both threads. The reader may still be blocked on stdin when the client never
    /// closes it; the server exits anyway, so only the writer is waited for in that case.
    pub(super) fn join_writer(self) {
        let _ = self.writer.join();
        drop(self.reader);
    }
}

/// Connects stdin and stdout to a new connection, returned for the server to use.
pub(super) fn stdio() -> (Connection, IoThreads) {
    let (server, client) = Connection::memory();
    let Connection { sender: to_server, receiver: from_server } = client;
    let reader = std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        while let Some(body) = read_frame(&mut input) {
            match serde_json::from_slice::<Message>(&body) {
                Ok(message) => {
                    let exit = matches!(&message, Message::Notification(n) if n.method == "exit");
                    if to_server.send(message).is_err() || exit {
                        break;
                    }
                }
                Err(e) => eprintln!("tunec lsp: skipped a message that is not JSON-RPC: {e}"),
            }
        }
    });
    let writer = std::thread::spawn(move || {
        let stdout = std::io::stdout();
        let mut output = stdout.lock();
        for message in from_server {
            if message.write(&mut output).and_then(|()| output.flush()).is_err() {
                break;
            }
        }
    });
    (server, IoThreads { reader, writer })
}

/// Reads one framed body; `None` at the end of input. Header lines other than `Content-Length`
/// are ignored, and a header block without a length is skipped.
pub fn read_frame(input: &mut impl BufRead) -> Option<Vec<u8>> {
    loop {
        let mut length = None;
        let mut line = String::new();
        loop {
            line.clear();
            match input.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let trimmed = line.trim_end_matches(['\r', '\n']);
            if trimmed.is_empty() {
                if length.is_some() {
                    break;
                }
                continue;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length?;
        // A length far beyond any real document is a corrupt header; reading it would only wait.
        if length > 512 << 20 {
            eprintln!("tunec lsp: skipped a frame of {length} bytes");
            continue;
        }
        let mut body = vec![0; length];
        if input.read_exact(&mut body).is_err() {
            return None;
        }
        return Some(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_and_garbage_headers_skipped() {
        let text = b"garbage line\r\n\r\nContent-Length: 2\r\nContent-Type: x\r\n\r\n{}Content-Length: 3\r\n\r\nabc";
        let mut input = &text[..];
        assert_eq!(read_frame(&mut input).as_deref(), Some(&b"{}"[..]));
        assert_eq!(read_frame(&mut input).as_deref(), Some(&b"abc"[..]));
        assert_eq!(read_frame(&mut input), None);
    }

    #[test]
    fn a_truncated_body_ends_the_input() {
        let mut input = &b"Content-Length: 10\r\n\r\nabc"[..];
        assert_eq!(read_frame(&mut input), None);
    }
}
