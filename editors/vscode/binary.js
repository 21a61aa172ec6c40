// Which tunec the extension starts: the `tunec.path` setting when the user set one, else the tunec
// that `pip install tunec` put in a virtualenv of the workspace (`.venv` or `venv`, the folders
// `python -m venv` and uv create), else `tunec` on PATH. Pure, so that it is tested without VS Code.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * @param {string | undefined} setting the `tunec.path` setting ('' or 'tunec' when not set)
 * @param {string[]} folders the workspace folders' paths
 * @param {string} platform `process.platform`
 * @returns {string} the command to run
 */
function resolveTunec(setting, folders, platform = process.platform) {
  if (setting && setting !== 'tunec') return setting;
  const scripts = platform === 'win32' ? ['Scripts', 'tunec.exe'] : ['bin', 'tunec'];
  for (const folder of folders) {
    for (const venv of ['.venv', 'venv']) {
      const candidate = path.join(folder, venv, ...scripts);
      if (isExecutable(candidate)) return candidate;
    }
  }
  return 'tunec';
}

module.exports = { resolveTunec };
