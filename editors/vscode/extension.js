// Starts `tunec lsp` for .tune files. Everything else (diagnostics, hover, completion,
// formatting) comes from the server; this file only launches it and passes the settings. Which
// tunec it starts is decided in binary.js.
'use strict';

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');
const { resolveTunec } = require('./binary');

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration('tunec');
  const folders = (vscode.workspace.workspaceFolders || []).map((f) => f.uri.fsPath);
  const command = resolveTunec(config.get('path'), folders);
  const docsUrl = config.get('docsUrl');
  const server = { command, args: ['lsp'], transport: TransportKind.stdio };
  client = new LanguageClient(
    'tunec',
    'tunec',
    { run: server, debug: server },
    {
      documentSelector: [
        { scheme: 'file', language: 'tune' },
        { scheme: 'untitled', language: 'tune' },
      ],
      initializationOptions: docsUrl ? { docsUrl } : {},
    },
  );
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration('tunec.path') || event.affectsConfiguration('tunec.docsUrl')) {
        vscode.window.showInformationMessage('tunec: reload the window to restart the language server with the new settings.');
      }
    }),
  );
  client.start().catch((error) => {
    vscode.window.showErrorMessage(`tunec: could not start \`${command} lsp\` (${error.message}); set tunec.path.`);
  });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
