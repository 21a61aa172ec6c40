//! `tunec lsp` spoken to as an editor speaks to it: the real binary, LSP framing over its stdin and
//! stdout, one session from `initialize` to `exit`.
//!
//! The session opens MedReason with one mistake and a non-ASCII comment before it on the same
//! line (so columns must be counted in UTF-16 code units), then asks every request the server
//! answers, sends it garbage and an unknown method, fixes the mistake with an incremental change,
//! and shuts it down. Another opens examples/tiny-local, clean, and asks why a job has no
//! estimate and which fields are left to write. Waiting for a message has a generous limit only so
//! that a broken server fails the test instead of hanging it; nothing is timed.

use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;
use tunec_runtime::lsp::read_frame;

const MEDREASON: &str = include_str!("../examples/medreason/medreason.tune");

struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tunec"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tunec lsp starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            while let Some(body) = read_frame(&mut reader) {
                let message: Value = serde_json::from_slice(&body).expect("the server writes JSON");
                if tx.send(message).is_err() {
                    break;
                }
            }
        });
        Client { child, stdin, messages, next_id: 0 }
    }

    fn write_raw(&mut self, body: &str) {
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.write_raw(&json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string());
    }

    /// Sends a request and returns its response, keeping the notifications that came first.
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.write_raw(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string());
        loop {
            let message = self.receive();
            if message["id"] == id {
                return message;
            }
        }
    }

    fn receive(&mut self) -> Value {
        self.messages.recv_timeout(Duration::from_secs(60)).expect("the server answers")
    }

    /// The next `publishDiagnostics` notification.
    fn diagnostics(&mut self) -> Value {
        loop {
            let message = self.receive();
            if message["method"] == "textDocument/publishDiagnostics" {
                return message["params"].clone();
            }
        }
    }
}

fn position(text: &str, needle: &str, delta: usize) -> Value {
    let offset = text.find(needle).unwrap_or_else(|| panic!("`{needle}` in the text")) + delta;
    let line = text[..offset].matches('\n').count();
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let character: usize = text[line_start..offset].chars().map(char::len_utf16).sum();
    json!({"line": line, "character": character})
}

#[test]
fn a_whole_session() {
    let dir = std::env::temp_dir().join(format!("tunec-lsp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let path = dir.join("medreason.tune");
    // One mistake (`dorp`), after a comment with characters outside the BMP on the same line.
    let text = MEDREASON.replace("    overflow  = drop", "    /* é😀 */ overflow  = dorp");
    std::fs::write(&path, &text).expect("write");
    let uri = format!("file://{}", path.display());
    let doc = json!({"uri": uri});

    let mut client = Client::start();
    let init = client.request(
        "initialize",
        json!({"processId": null, "rootUri": null, "capabilities": {},
               "initializationOptions": {"docsUrl": "https://example.test/docs/errors"}}),
    );
    let caps = &init["result"]["capabilities"];
    assert_eq!(caps["textDocumentSync"], 2, "incremental sync: {init}");
    for provider in [
        "hoverProvider",
        "definitionProvider",
        "referencesProvider",
        "documentSymbolProvider",
        "documentFormattingProvider",
    ] {
        assert_eq!(caps[provider], true, "{provider}");
    }
    assert!(caps["completionProvider"].is_object());
    client.notify("initialized", json!({}));

    // Diagnostics on open.
    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "tune", "version": 1, "text": text}}),
    );
    let published = client.diagnostics();
    assert_eq!(published["uri"], uri);
    assert_eq!(published["version"], 1);
    let diagnostics = published["diagnostics"].as_array().expect("a list");
    assert_eq!(diagnostics.len(), 1, "{published}");
    let d = &diagnostics[0];
    assert_eq!(d["code"], "tunec::check::unknown_value");
    assert_eq!(d["codeDescription"]["href"], "https://example.test/docs/errors/unknown_value.md");
    assert_eq!(d["severity"], 1);
    assert_eq!(d["source"], "tunec");
    assert!(d["message"].as_str().expect("message").contains("help: "), "{d}");
    assert_eq!(d["range"]["start"], position(&text, "dorp", 0), "UTF-16 columns");
    assert_eq!(d["range"]["end"], position(&text, "dorp", 4));

    // Hover on a train node: type, documentation and the estimate with its terms.
    let hover =
        client.request("textDocument/hover", json!({"textDocument": doc, "position": position(&text, "train sft", 6)}));
    let markdown = hover["result"]["contents"]["value"].as_str().expect("markdown");
    assert!(markdown.contains("train sft: Adapter<llama>"), "{markdown}");
    assert!(markdown.contains("Supervised fine-tuning"), "{markdown}");
    assert!(markdown.contains("ml.p4d.24xlarge x 1: GPU"), "{markdown}");
    assert!(markdown.contains("GPU: ") && markdown.contains("host: "), "the terms: {markdown}");

    // Hover on a field: its type, its documentation and its value.
    let hover = client
        .request("textDocument/hover", json!({"textDocument": doc, "position": position(&text, "learning_rate", 2)}));
    let markdown = hover["result"]["contents"]["value"].as_str().expect("markdown");
    assert!(markdown.contains("The peak learning rate"), "{markdown}");
    assert!(markdown.contains("value: `0.0002`"), "{markdown}");

    // Hover on an enumeration value and on a variant.
    let hover =
        client.request("textDocument/hover", json!({"textDocument": doc, "position": position(&text, "qlora {", 1)}));
    assert!(
        hover["result"]["contents"]["value"].as_str().expect("markdown").contains("4-bit quantized base"),
        "{hover}"
    );

    // Definition and references of a node name.
    let def = client.request(
        "textDocument/definition",
        json!({"textDocument": doc, "position": position(&text, "parts.train", 1)}),
    );
    assert_eq!(def["result"]["uri"], uri);
    assert_eq!(def["result"]["range"]["start"], position(&text, "parts = split", 0));
    let refs = client.request(
        "textDocument/references",
        json!({"textDocument": doc, "position": position(&text, "llama =", 0), "context": {"includeDeclaration": true}}),
    );
    let refs = refs["result"].as_array().expect("locations");
    assert_eq!(refs.len(), 3, "the declaration, `tokenizer = llama` and `sft(llama`: {refs:?}");

    // Completion: enumeration values after `precision = `.
    let line_end = position(&text, "precision              = bf16", 25);
    let completion = client.request("textDocument/completion", json!({"textDocument": doc, "position": line_end}));
    let labels: Vec<&str> =
        completion["result"].as_array().expect("items").iter().filter_map(|i| i["label"].as_str()).collect();
    assert_eq!(labels, ["bf16", "fp16", "fp32"]);

    // Document symbols: the pipeline and its nodes.
    let symbols = client.request("textDocument/documentSymbol", json!({"textDocument": doc}));
    let pipeline = &symbols["result"][0];
    assert_eq!(pipeline["name"], "medreason");
    let children: Vec<&str> =
        pipeline["children"].as_array().expect("children").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(children, ["target sagemaker", "llama", "raw", "convo", "parts", "sft", "merged", "report"]);

    // Formatting: one edit that gives the formatter's output.
    let formatting = client.request(
        "textDocument/formatting",
        json!({"textDocument": doc, "options": {"tabSize": 2, "insertSpaces": true}}),
    );
    let edits = formatting["result"].as_array().expect("edits");
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0]["newText"], tunec_compiler::format::format(&text).expect("formats"));

    // Garbage, an unknown method, bad parameters and a position past the end do not stop it.
    client.write_raw("{ this is not json");
    let unknown = client.request("textDocument/unknownThing", json!({}));
    assert_eq!(unknown["error"]["code"], -32601);
    let bad = client.request("textDocument/hover", json!({"nonsense": true}));
    assert_eq!(bad["error"]["code"], -32602);
    let far = client
        .request("textDocument/hover", json!({"textDocument": doc, "position": {"line": 9999, "character": 9999}}));
    assert!(far["result"].is_null(), "{far}");

    // An incremental change that fixes the mistake: diagnostics go empty, for version 2.
    let start = position(&text, "dorp", 0);
    let end = position(&text, "dorp", 4);
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"range": {"start": start, "end": end}, "text": "drop"}]}),
    );
    let published = client.diagnostics();
    assert_eq!(published["version"], 2);
    assert_eq!(published["diagnostics"], json!([]), "{published}");

    let shutdown = client.request("shutdown", Value::Null);
    assert!(shutdown["result"].is_null() && shutdown.get("error").is_none(), "{shutdown}");
    client.notify("exit", Value::Null);
    let status = client.child.wait().expect("the server exits");
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn hover_and_completion_on_a_clean_local_pipeline() {
    // examples/tiny-local as it is in the repository: clean, local target, jobs without `compute`.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tiny-local/tiny.tune");
    let text = std::fs::read_to_string(&path).expect("tiny.tune");
    let uri = format!("file://{}", path.display());
    let doc = json!({"uri": uri});
    let mut client = Client::start();
    client.request("initialize", json!({"processId": null, "rootUri": null, "capabilities": {}}));
    client.notify("initialized", json!({}));
    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "tune", "version": 1, "text": text}}),
    );
    assert_eq!(client.diagnostics()["diagnostics"], json!([]), "the example is clean");

    // No estimate, and why: not that something did not check.
    for (needle, delta) in [("train sft", 6), ("merge merged", 6), ("evaluate report", 9)] {
        let hover = client
            .request("textDocument/hover", json!({"textDocument": doc, "position": position(&text, needle, delta)}));
        let markdown = hover["result"]["contents"]["value"].as_str().expect("markdown");
        assert!(!markdown.contains("did not check"), "{markdown}");
        assert!(
            markdown.contains(
                "no estimate: the local target runs the job on this machine, whose accelerator tunec \
                 does not know; give it `compute = \"<instance>\" x 1`"
            ),
            "{markdown}"
        );
    }

    // In sft's body, after its last field: the fields not yet written, and none of those that are.
    let after = position(&text, "precision", 0);
    let completion = client.request("textDocument/completion", json!({"textDocument": doc, "position": after}));
    let labels: Vec<&str> =
        completion["result"].as_array().expect("items").iter().filter_map(|i| i["label"].as_str()).collect();
    for set in ["method", "per_device_batch", "max_steps", "save_steps", "learning_rate", "data", "eval"] {
        assert!(!labels.contains(&set), "`{set}` is set in sft: {labels:?}");
    }
    for free in ["epochs", "grad_accum", "warmup_steps", "compute"] {
        assert!(labels.contains(&free), "`{free}`: {labels:?}");
    }
    assert!(labels.contains(&"precision"), "the key under the cursor is offered: {labels:?}");
    client.request("shutdown", Value::Null);
    client.notify("exit", Value::Null);
    assert_eq!(client.child.wait().expect("the server exits").code(), Some(0));
}

#[test]
fn exit_without_shutdown_is_exit_code_1() {
    let mut client = Client::start();
    client.request("initialize", json!({"processId": null, "rootUri": null, "capabilities": {}}));
    client.notify("exit", Value::Null);
    assert_eq!(client.child.wait().expect("exits").code(), Some(1));
}
