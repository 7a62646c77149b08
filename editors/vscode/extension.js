// The dlspec extension for VS Code: starts `dslc lsp` (the language server) for .dlspec files.
// Diagnostics, hover, completion, go to definition, outline, formatting and inlay hints all come
// from the server; this file only finds the command and connects it to the editor.
"use strict";

const path = require("path");
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function serverCommand() {
  const configured = vscode.workspace.getConfiguration("dlspec").get("server.command");
  const command = Array.isArray(configured) && configured.length ? configured : ["dslc", "lsp"];
  const folder = vscode.workspace.workspaceFolders ? vscode.workspace.workspaceFolders[0].uri.fsPath : undefined;
  let program = command[0];
  if (folder && program.includes("/") && !path.isAbsolute(program)) {
    program = path.join(folder, program);
  }
  return { command: program, args: command.slice(1), options: folder ? { cwd: folder } : {} };
}

async function start() {
  const server = serverCommand();
  client = new LanguageClient(
    "dlspec",
    "dslc language server",
    server,
    {
      documentSelector: [
        { scheme: "file", language: "dlspec" },
        { scheme: "untitled", language: "dlspec" },
      ],
    },
  );
  try {
    await client.start();
  } catch (err) {
    vscode.window.showErrorMessage(
      `dslc: could not start \`${[server.command, ...server.args].join(" ")}\` (${err.message}). ` +
        "Install dslc, or set dlspec.server.command, e.g. [\".venv/bin/dslc\", \"lsp\"].",
    );
  }
}

async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand("dlspec.restartServer", async () => {
      if (client) {
        await client.stop();
      }
      await start();
    }),
  );
  await start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
