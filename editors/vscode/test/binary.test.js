// Which tunec the extension starts (binary.js), on real folders.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { test } = require('node:test');
const { resolveTunec } = require('../binary');

function workspace(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunec-vscode-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function script(file, mode = 0o755) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, '#!/bin/sh\n');
  fs.chmodSync(file, mode);
  return file;
}

test('a tunec.path the user set wins', (t) => {
  const dir = workspace(t);
  script(path.join(dir, '.venv/bin/tunec'));
  assert.equal(resolveTunec('/opt/tunec/bin/tunec', [dir], 'linux'), '/opt/tunec/bin/tunec');
});

test('the wheel in a workspace virtualenv comes before PATH', (t) => {
  const [a, b] = [workspace(t), workspace(t)];
  const venv = script(path.join(b, 'venv/bin/tunec'));
  assert.equal(resolveTunec('tunec', [a, b], 'linux'), venv);
  const dotVenv = script(path.join(b, '.venv/bin/tunec'));
  assert.equal(resolveTunec('', [a, b], 'linux'), dotVenv, '.venv before venv');
  assert.equal(resolveTunec(undefined, [b], 'win32'), 'tunec', 'Windows virtualenvs keep scripts in Scripts/');
});

test('without a virtualenv, or with a file that cannot run, it is tunec on PATH', (t) => {
  const dir = workspace(t);
  assert.equal(resolveTunec('tunec', [dir], 'linux'), 'tunec');
  script(path.join(dir, '.venv/bin/tunec'), 0o644);
  assert.equal(resolveTunec('tunec', [dir], 'linux'), 'tunec');
  fs.mkdirSync(path.join(dir, 'venv/bin/tunec'), { recursive: true });
  assert.equal(resolveTunec('tunec', [dir], 'linux'), 'tunec');
  assert.equal(resolveTunec('tunec', [], 'linux'), 'tunec');
});
