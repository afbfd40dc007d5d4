// What the Node.js tests share: starting audsync and the emulators as child processes,
// stopping them, and polling with a deadline. No dependencies beyond Node itself, so any
// test folder imports it by relative path.
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';

// Starts `file args` and resolves the port of its "listening on http://host:port " line.
export function startProcess(file, args, name) {
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const port = new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start: ${stderr}`)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/[^ ]+:(\d+)[ \n]/);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited ${code}: ${stderr}`));
    });
  });
  port.catch(() => {});  // reported where it is awaited
  return { child, port, stderr: () => stderr };
}

// SIGTERM, then its exit code (undefined for no process; at once if it has exited).
export async function stop(proc) {
  if (!proc) return undefined;
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return proc.child.exitCode;
  const exited = new Promise((resolve) => proc.child.on('exit', (code) => resolve(code)));
  proc.child.kill('SIGTERM');
  return exited;
}

// Polls `check` until it returns true, or fails after `ms` with the last state.
export async function eventually(check, ms, what, pollMs = 50) {
  const deadline = Date.now() + ms;
  for (;;) {
    const last = await check();
    if (last === true) return;
    if (Date.now() > deadline) assert.fail(`${what}: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, pollMs));  // poll interval
  }
}
