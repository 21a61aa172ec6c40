//! `tunec lsp`: a Language Server Protocol server over stdio.
//!
//! One thread runs the loop in [`serve`]; `transport.rs` frames messages on two more. The server
//! is synchronous on purpose: a check of a medreason-sized file takes about a millisecond, so a
//! request is answered before the next message is read, and there is nothing to cancel.
//!
//! **Documents.** Text sync is incremental (`document.rs` applies ranges in UTF-16 positions).
//! A document's `Analysis` (`analysis.rs`: the compiler's `check` with the file-system `World`
//! relative to the document's folder, as `tunec check` runs it) is computed when a request needs
//! it and dropped on every change.
//!
//! **Diagnostics** are published on open and, after changes, once the document has been quiet for
//! [`DEBOUNCE`]: the loop waits for the next message with a timeout that ends at the earliest
//! pending deadline. Each diagnostic carries its code (`tunec::check::...`) and a
//! `codeDescription` link to its page: [`DOCS_URL`] (the `docs/errors/` folder of the checkout the
//! binary was built from) unless the client passes `initializationOptions.docsUrl`.
//!
//! **Requests**: hover, definition, references, completion (`complete.rs`), document symbols and
//! formatting (the compiler's formatter). A request the server does not know gets
//! `MethodNotFound`; one whose parameters do not parse gets `InvalidParams`; neither stops the
//! server. `exit` ends it with code 0 after `shutdown`, 1 otherwise, as the protocol says.

mod analysis;
mod complete;
mod document;
mod transport;

pub use analysis::{analyze, Analysis};
pub use document::{Document, LineIndex};
pub use transport::read_frame;

/// The per-request functions, for `runtime/benches/lsp.rs`; the server calls the same ones.
pub mod bench {
    use super::{analysis, complete, Analysis, Document, DOCS_URL};
    use lsp_types::{CompletionItem, Url};

    pub fn diagnostics(analysis: &Analysis, doc: &Document, uri: &Url) -> Vec<lsp_types::Diagnostic> {
        analysis::diagnostics(analysis, doc, uri, DOCS_URL)
    }

    pub fn hover(analysis: &Analysis, offset: usize) -> Option<String> {
        analysis::hover(analysis, offset).map(|(markdown, _)| markdown)
    }

    pub fn complete(text: &str, offset: usize) -> Vec<CompletionItem> {
        complete::complete(text, offset)
    }
}

use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Notification as _, PublishDiagnostics,
};
use lsp_types::request::{
    Completion, DocumentSymbolRequest, Formatting, GotoDefinition, HoverRequest, References, Request as _,
};
use lsp_types::{
    CompletionOptions, CompletionResponse, DocumentSymbolResponse, GotoDefinitionResponse, HoverProviderCapability,
    InitializeParams, Location, OneOf, Position, PublishDiagnosticsParams, Range, ServerCapabilities, ServerInfo,
    TextDocumentSyncCapability, TextDocumentSyncKind, TextEdit, Url,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a document must be quiet after a change before its diagnostics are published.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Where the error pages are, unless the client says otherwise: the `docs/errors/` folder of the
/// checkout this binary was built from.
pub const DOCS_URL: &str = concat!("file://", env!("CARGO_MANIFEST_DIR"), "/../docs/errors/");

/// Runs the server on stdin and stdout until `exit` or the end of input; returns the process's
/// exit code.
pub fn serve_stdio() -> u8 {
    let (connection, threads) = transport::stdio();
    let code = serve(&connection);
    drop(connection);
    threads.join_writer();
    code
}

/// Runs the server on a connection; returns the exit code (0 after `shutdown` and `exit`).
pub fn serve(connection: &Connection) -> u8 {
    let capabilities = ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::INCREMENTAL)),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec!["=".into(), "\"".into(), "{".into(), ":".into()]),
            ..CompletionOptions::default()
        }),
        ..ServerCapabilities::default()
    };
    let init = serde_json::json!({
        "capabilities": capabilities,
        "serverInfo": ServerInfo { name: "tunec".into(), version: Some(env!("CARGO_PKG_VERSION").into()) },
    });
    let params = match initialize(connection, init) {
        Some(params) => params,
        None => return 1,
    };
    let docs_url = params
        .initialization_options
        .as_ref()
        .and_then(|o| o.get("docsUrl"))
        .and_then(|u| u.as_str())
        .map_or_else(|| DOCS_URL.to_owned(), |u| if u.ends_with('/') { u.to_owned() } else { format!("{u}/") });
    let mut server = Server { connection, docs: HashMap::new(), docs_url, shutdown: false };
    server.run()
}

/// The initialize handshake; `None` when the client left before finishing it.
fn initialize(connection: &Connection, init: serde_json::Value) -> Option<InitializeParams> {
    let (id, params) = connection.initialize_start().ok()?;
    let params: InitializeParams = match serde_json::from_value(params) {
        Ok(params) => params,
        Err(e) => {
            eprintln!("tunec lsp: initialize parameters not understood ({e}); using defaults");
            InitializeParams::default()
        }
    };
    connection.initialize_finish(id, init).ok()?;
    Some(params)
}

struct Doc {
    doc: Document,
    analysis: Option<Analysis>,
    /// When the diagnostics are due, after a change.
    due: Option<Instant>,
}

struct Server<'a> {
    connection: &'a Connection,
    docs: HashMap<Url, Doc>,
    docs_url: String,
    shutdown: bool,
}

impl Server<'_> {
    fn run(&mut self) -> u8 {
        loop {
            let next = self.docs.values().filter_map(|d| d.due).min();
            let message = match next {
                Some(due) => match self.connection.receiver.recv_timeout(due.saturating_duration_since(Instant::now()))
                {
                    Ok(message) => message,
                    Err(crossbeam_timeout) if crossbeam_timeout.is_timeout() => {
                        self.publish_due();
                        continue;
                    }
                    Err(_) => return 1,
                },
                None => match self.connection.receiver.recv() {
                    Ok(message) => message,
                    Err(_) => return 1,
                },
            };
            match message {
                Message::Request(request) => self.request(request),
                Message::Notification(n) if n.method == "exit" => return if self.shutdown { 0 } else { 1 },
                Message::Notification(n) => self.notification(n),
                Message::Response(_) => {}
            }
        }
    }

    fn send(&self, message: impl Into<Message>) {
        let _ = self.connection.sender.send(message.into());
    }

    fn request(&mut self, request: Request) {
        let id = request.id.clone();
        if self.shutdown {
            self.send(Response::new_err(id, ErrorCode::InvalidRequest as i32, "the server is shutting down".into()));
            return;
        }
        let result = match request.method.as_str() {
            "shutdown" => {
                self.shutdown = true;
                Ok(serde_json::Value::Null)
            }
            HoverRequest::METHOD => self.with_params::<HoverRequest>(request, |s, p| {
                let pos = p.text_document_position_params;
                s.at(&pos.text_document.uri, pos.position, |doc, analysis, offset| {
                    analysis::hover(analysis, offset).map(|(md, span)| analysis::hover_value(md, doc.range(span)))
                })
            }),
            GotoDefinition::METHOD => self.with_params::<GotoDefinition>(request, |s, p| {
                let pos = p.text_document_position_params;
                let uri = pos.text_document.uri.clone();
                s.at(&pos.text_document.uri, pos.position, |doc, analysis, offset| {
                    analysis::definition(analysis, offset).map(|span| {
                        GotoDefinitionResponse::Scalar(Location { uri: uri.clone(), range: doc.range(span) })
                    })
                })
            }),
            References::METHOD => self.with_params::<References>(request, |s, p| {
                let pos = p.text_document_position;
                let uri = pos.text_document.uri.clone();
                let include = p.context.include_declaration;
                s.at(&pos.text_document.uri, pos.position, |doc, analysis, offset| {
                    let spans = analysis::references(analysis, offset, include);
                    (!spans.is_empty()).then(|| {
                        spans
                            .into_iter()
                            .map(|span| Location { uri: uri.clone(), range: doc.range(span) })
                            .collect::<Vec<_>>()
                    })
                })
            }),
            Completion::METHOD => self.with_params::<Completion>(request, |s, p| {
                let pos = p.text_document_position;
                let doc = s.docs.get(&pos.text_document.uri)?;
                let offset = doc.doc.offset(pos.position);
                Some(CompletionResponse::Array(complete::complete(&doc.doc.text, offset)))
            }),
            DocumentSymbolRequest::METHOD => self.with_params::<DocumentSymbolRequest>(request, |s, p| {
                let uri = p.text_document.uri;
                s.analysis(&uri)?;
                let doc = s.docs.get(&uri)?;
                let analysis = doc.analysis.as_ref()?;
                Some(DocumentSymbolResponse::Nested(analysis::symbols(analysis, &doc.doc)))
            }),
            Formatting::METHOD => self.with_params::<Formatting>(request, |s, p| {
                let doc = &s.docs.get(&p.text_document.uri)?.doc;
                let formatted = tunec_compiler::format::format(&doc.text).ok()?;
                if formatted == doc.text {
                    return Some(Vec::new());
                }
                let end = doc.index.position(&doc.text, doc.text.len());
                Some(vec![TextEdit { range: Range { start: Position::default(), end }, new_text: formatted }])
            }),
            _ => Err((ErrorCode::MethodNotFound, format!("`{}` is not supported", request.method))),
        };
        match result {
            Ok(value) => self.send(Response { id, result: Some(value), error: None }),
            Err((code, message)) => self.send(Response::new_err(id, code as i32, message)),
        }
    }

    /// Parses a request's parameters and runs `f`.
    fn with_params<R: lsp_types::request::Request>(
        &mut self,
        request: Request,
        f: impl FnOnce(&mut Self, R::Params) -> R::Result,
    ) -> Result<serde_json::Value, (ErrorCode, String)> {
        let params: R::Params = serde_json::from_value(request.params)
            .map_err(|e| (ErrorCode::InvalidParams, format!("parameters of `{}`: {e}", R::METHOD)))?;
        serde_json::to_value(f(self, params)).map_err(|e| (ErrorCode::InternalError, e.to_string()))
    }

    /// Runs `f` on the analysis of `uri` at `position` (analysing it first if needed).
    fn at<T>(
        &mut self,
        uri: &Url,
        position: Position,
        f: impl FnOnce(&Document, &Analysis, usize) -> Option<T>,
    ) -> Option<T> {
        self.analysis(uri)?;
        let doc = self.docs.get(uri)?;
        let offset = doc.doc.offset(position);
        f(&doc.doc, doc.analysis.as_ref()?, offset)
    }

    /// Makes sure the analysis of `uri` is current.
    fn analysis(&mut self, uri: &Url) -> Option<()> {
        let doc = self.docs.get_mut(uri)?;
        if doc.analysis.is_none() {
            let path = file_path(uri);
            let name = path.as_ref().map_or_else(|| uri.to_string(), |p| p.display().to_string());
            doc.analysis = Some(analyze(&name, &doc.doc.text, path.as_deref()));
        }
        Some(())
    }

    fn notification(&mut self, n: Notification) {
        match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let Ok(params) = serde_json::from_value::<lsp_types::DidOpenTextDocumentParams>(n.params) else {
                    return;
                };
                let item = params.text_document;
                let doc = Doc { doc: Document::new(item.text, item.version), analysis: None, due: None };
                self.docs.insert(item.uri.clone(), doc);
                self.publish(&item.uri);
            }
            DidChangeTextDocument::METHOD => {
                let Ok(params) = serde_json::from_value::<lsp_types::DidChangeTextDocumentParams>(n.params) else {
                    return;
                };
                let Some(doc) = self.docs.get_mut(&params.text_document.uri) else { return };
                doc.doc.apply(params.content_changes, params.text_document.version);
                doc.analysis = None;
                doc.due = Some(Instant::now() + DEBOUNCE);
            }
            DidCloseTextDocument::METHOD => {
                let Ok(params) = serde_json::from_value::<lsp_types::DidCloseTextDocumentParams>(n.params) else {
                    return;
                };
                if self.docs.remove(&params.text_document.uri).is_some() {
                    // Clear what the editor shows for a closed file.
                    let clear = PublishDiagnosticsParams {
                        uri: params.text_document.uri,
                        diagnostics: Vec::new(),
                        version: None,
                    };
                    self.send(Notification::new(PublishDiagnostics::METHOD.into(), clear));
                }
            }
            _ => {}
        }
    }

    fn publish_due(&mut self) {
        let now = Instant::now();
        let due: Vec<Url> =
            self.docs.iter().filter(|(_, d)| d.due.is_some_and(|t| t <= now)).map(|(u, _)| u.clone()).collect();
        for uri in due {
            self.publish(&uri);
        }
    }

    fn publish(&mut self, uri: &Url) {
        if self.analysis(uri).is_none() {
            return;
        }
        let Some(doc) = self.docs.get_mut(uri) else { return };
        doc.due = None;
        let Some(analysis) = doc.analysis.as_ref() else { return };
        let diagnostics = analysis::diagnostics(analysis, &doc.doc, uri, &self.docs_url);
        let params = PublishDiagnosticsParams { uri: uri.clone(), diagnostics, version: Some(doc.doc.version) };
        self.send(Notification::new(PublishDiagnostics::METHOD.into(), params));
    }
}

/// The file a `file:` URI names, for the `World`; other schemes (an unsaved buffer) have none.
fn file_path(uri: &Url) -> Option<PathBuf> {
    if uri.scheme() == "file" {
        uri.to_file_path().ok()
    } else {
        None
    }
}
