// The TextMate grammar, run by the engine VS Code runs it with (vscode-textmate on the
// vscode-oniguruma regex library), over every .tune file of the repository: the examples, the test
// fixtures, the fuzzing seeds and the prelude.
//
// What it must get right, checked against oracles it does not share code with:
// - strings and comments, character by character, against a scanner written from GRAMMAR.md §2.3
//   and §2.7 (a `//` in a string is string, a `"` in a comment is comment, a plain string ends at
//   the line's end);
// - every node's kind keyword and name, at the places `tunec check --format json` reports them;
// - the pipeline, target, param and defaults keywords, booleans, env() and secret();
// - and no error state: nothing scoped `invalid`, and no string or comment left open at the end of
//   a file that tunec parses.
//
// TUNEC_BIN is the tunec binary to ask (CI passes the one it built).

'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { test } = require('node:test');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

const root = path.resolve(__dirname, '../../..');
const grammarPath = path.join(__dirname, '../syntaxes/tune.tmLanguage.json');

function tuneFiles() {
  const out = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.tune')) out.push(full);
    }
  };
  for (const dir of ['examples', 'tests/cases', 'compiler/fuzz/seeds']) walk(path.join(root, dir));
  out.push(path.join(root, 'stdlib/prelude.tune'));
  return out.sort();
}

async function loadGrammar() {
  const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm')).buffer;
  await oniguruma.loadWASM(wasm);
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scope) =>
      scope === 'source.tune' ? vsctm.parseRawGrammar(fs.readFileSync(grammarPath, 'utf8'), grammarPath) : null,
  });
  return registry.loadGrammar('source.tune');
}

// The lexical class of every UTF-16 unit of `text`: 'c' code, 's' string, 'm' comment; and whether
// a string or block comment is still open at the end.
function scan(text) {
  const cls = new Array(text.length).fill('c');
  let i = 0;
  let open = false;
  const mark = (from, to, c) => {
    for (let k = from; k < to; k++) cls[k] = c;
  };
  while (i < text.length) {
    if (text.startsWith('//', i)) {
      const end = text.indexOf('\n', i);
      const stop = end < 0 ? text.length : end;
      mark(i, stop, 'm');
      i = stop;
    } else if (text.startsWith('/*', i)) {
      const end = text.indexOf('*/', i + 2);
      const stop = end < 0 ? text.length : end + 2;
      open = open || end < 0;
      mark(i, stop, 'm');
      i = stop;
    } else if (text.startsWith('"""', i)) {
      let k = i + 3;
      while (k < text.length && !text.startsWith('"""', k)) k += text[k] === '\\' ? 2 : 1;
      const stop = Math.min(text.length, k + 3);
      open = open || k >= text.length;
      mark(i, stop, 's');
      i = stop;
    } else if (text[i] === '"') {
      let k = i + 1;
      while (k < text.length && text[k] !== '"' && text[k] !== '\n') k += text[k] === '\\' ? 2 : 1;
      const closed = k < text.length && text[k] === '"';
      const stop = closed ? k + 1 : Math.min(k, text.length);
      mark(i, stop, 's');
      i = stop;
    } else {
      i += 1;
    }
  }
  return { cls, open };
}

function tokenize(grammar, text) {
  const lines = text.split('\n');
  const starts = [];
  const tokens = [];
  let offset = 0;
  let stack = vsctm.INITIAL;
  for (const line of lines) {
    starts.push(offset);
    const result = grammar.tokenizeLine(line, stack);
    for (const t of result.tokens) {
      tokens.push({ start: offset + t.startIndex, end: offset + Math.min(t.endIndex, line.length), scopes: t.scopes });
    }
    stack = result.ruleStack;
    offset += line.length + 1;
  }
  const scopesAt = new Array(text.length).fill(null);
  for (const t of tokens) for (let k = t.start; k < t.end; k++) scopesAt[k] = t.scopes;
  // Depth 1: only the grammar's root rule is on the stack, no string or comment is open.
  return { tokens, scopesAt, starts, closed: stack.depth === 1 };
}

function check(file) {
  const run = spawnSync(process.env.TUNEC_BIN, ['check', '--format', 'json', file], { cwd: root, encoding: 'utf8' });
  assert.ok(run.status === 0 || run.status === 1, `tunec check ${file}: exit ${run.status}\n${run.stderr}`);
  return JSON.parse(run.stdout);
}

const hasScope = (scopes, name) => scopes !== null && scopes.some((s) => s === name || s.startsWith(`${name}.`));

test('the grammar highlights every example and fixture', async () => {
  assert.ok(process.env.TUNEC_BIN, 'set TUNEC_BIN to a tunec binary (CI passes the one it built)');
  const grammar = await loadGrammar();
  const files = tuneFiles();
  assert.ok(files.length > 70, `only ${files.length} .tune files found`);
  const kindsSeen = new Set();
  const counts = { strings: 0, comments: 0, nodes: 0, params: 0, defaults: 0 };
  for (const file of files) {
    const rel = path.relative(root, file);
    const text = fs.readFileSync(file, 'utf8');
    const doc = check(rel);
    const broken = doc.diagnostics.some((d) => /::(syntax|bad_literal)$/.test(d.code));
    const { cls, open } = scan(text);
    const { tokens, scopesAt, starts, closed } = tokenize(grammar, text);

    // Strings and comments, unit by unit.
    for (let k = 0; k < text.length; k++) {
      if (text[k] === '\n') continue;
      const scopes = scopesAt[k];
      const got = hasScope(scopes, 'comment') ? 'm' : hasScope(scopes, 'string') ? 's' : 'c';
      if (got !== cls[k]) {
        const line = starts.findLastIndex((s) => s <= k);
        const column = k - starts[line];
        const want = { c: 'code', s: 'string', m: 'comment' }[cls[k]];
        assert.fail(`${rel}:${line + 1}:${column + 1}: ${JSON.stringify(text[k])} is ${want}, the grammar says ${scopes}`);
      }
    }
    counts.strings += cls.filter((c, k) => c === 's' && (k === 0 || cls[k - 1] !== 's')).length;
    counts.comments += cls.filter((c, k) => c === 'm' && (k === 0 || cls[k - 1] !== 'm')).length;

    if (!broken) {
      assert.ok(closed && !open, `${rel}: a string or comment is left open at the end of the file`);
      const invalid = tokens.find((t) => t.scopes.some((s) => s.startsWith('invalid')));
      assert.equal(invalid, undefined, `${rel}: ${invalid && text.slice(invalid.start, invalid.end)} is scoped invalid`);
    }

    // Each node's kind keyword (where its declaration starts) and its name (line and column).
    const bytes = Buffer.from(text, 'utf8');
    for (const node of doc.nodes) {
      const at = bytes.subarray(0, node.span.start).toString('utf8').length;
      assert.ok(text.startsWith(node.kind, at), `${rel}: node ${node.name} does not start with ${node.kind}`);
      assert.ok(hasScope(scopesAt[at], 'storage.type.node-kind'), `${rel}: \`${node.kind}\` of ${node.name}: ${scopesAt[at]}`);
      const lineText = text.slice(starts[node.span.line - 1]);
      const column = Array.from(lineText).slice(0, node.span.column - 1).join('').length;
      const nameAt = starts[node.span.line - 1] + column;
      assert.equal(text.slice(nameAt, nameAt + node.name.length), node.name, `${rel}: the span of ${node.name}`);
      assert.ok(hasScope(scopesAt[nameAt], 'entity.name.function.node'), `${rel}: name ${node.name}: ${scopesAt[nameAt]}`);
      kindsSeen.add(node.kind);
      counts.nodes += 1;
    }

    // Keywords in code, followed by the name they introduce.
    const words = [
      [/\bpipeline\s+([A-Za-z_]\w*)/g, 'keyword.control.pipeline', 'entity.name.namespace', 'pipelines'],
      [/\btarget\s+([A-Za-z_]\w*)/g, 'keyword.control.target', 'support.class.target', 'targets'],
      [/\bparam\s+([A-Za-z_]\w*)/g, 'keyword.control.param', 'variable.parameter', 'params'],
      [/\bdefaults\s+([A-Za-z_][\w.]*)/g, 'keyword.control.defaults', 'storage.type.node-kind', 'defaults'],
      [/\b(?:true|false)\b()/g, 'constant.language.boolean', null, 'booleans'],
      [/\benv\s*\(()/g, 'support.function.builtin', null, 'env'],
      [/\bsecret\s*\(()/g, 'support.function.builtin', null, 'secret'],
    ];
    for (const [pattern, keyword, name, counter] of words) {
      for (const m of text.matchAll(pattern)) {
        if (cls[m.index] !== 'c') continue;
        assert.ok(hasScope(scopesAt[m.index], keyword), `${rel}: \`${m[0]}\` at ${m.index}: ${scopesAt[m.index]}`);
        if (name !== null) {
          const at = m.index + m[0].length - m[1].length;
          assert.ok(hasScope(scopesAt[at], name), `${rel}: \`${m[1]}\` after \`${m[0]}\`: ${scopesAt[at]}`);
        }
        counts[counter] = (counts[counter] || 0) + 1;
      }
    }
    if (doc.pipeline !== null) {
      assert.ok(
        tokens.some((t) => text.slice(t.start, t.end) === doc.pipeline && hasScope(t.scopes, 'entity.name.namespace')),
        `${rel}: the pipeline's name \`${doc.pipeline}\` is not highlighted`,
      );
    }
  }
  // The checks above ran on every kind of node and keyword, not on an empty corpus.
  assert.deepEqual([...kindsSeen].sort(), ['chat', 'dataset', 'evaluate', 'merge', 'model', 'split', 'train']);
  for (const [what, n] of Object.entries(counts)) assert.ok(n > 0, `no ${what} in the corpus`);
  for (const what of ['pipelines', 'targets', 'booleans', 'env']) assert.ok(counts[what] > 0, `no ${what} in the corpus`);
});
