/**
 * Ctrl-C as a user sends it: a real SIGINT to `fer train` in the middle of a
 * phase 2 epoch. The run must stop after the current batch, not at the end
 * of the epoch, write a checkpoint that points inside the epoch, exit with
 * 130, and resume from there.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

const CLI = path.resolve('dist/cli/main.js');
const DATA = process.env.FER_DATA ?? path.resolve('data/fer2013');
const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'fer-interrupt-test-'));

afterAll(() => {
  fs.rmSync(WORK, { recursive: true, force: true });
});

interface Interrupted {
  code: number | null;
  /** Seconds from the signal to the exit of the process. */
  secondsToExit: number;
  output: string;
}

/** Starts `fer train`, sends SIGINT `delayMs` after phase 2 starts, and waits for the exit. */
function trainAndInterrupt(args: string[], delayMs: number): Promise<Interrupted> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'train', ...args], { env: { ...process.env, FER_PROGRESS: '0' } });
    let output = '';
    let signalledAt: number | undefined;
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (signalledAt === undefined && /phase 2: the training step/.test(output)) {
        signalledAt = -1;
        setTimeout(() => {
          signalledAt = performance.now();
          child.kill('SIGINT');
        }, delayMs);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('exit', (code) => {
      if (signalledAt === undefined || signalledAt < 0) {
        reject(new Error(`fer train exited (${code}) before it was interrupted:\n${output.slice(-2000)}`));
        return;
      }
      resolve({ code, secondsToExit: (performance.now() - signalledAt) / 1000, output });
    });
  });
}

describe('Ctrl-C during training', () => {
  const runDir = path.join(WORK, 'run');
  const args = [
    '--model', 'MobileNet-0.25', '--data', DATA, '--run-dir', runDir, '--input-size', '96', '--batch-size', '32',
    '--limit-train', '3000', '--limit-val', '100', '--limit-test', '50', '--epochs1', '1', '--epochs2', '2',
    '--no-evaluate', '--no-figures', '--no-duplicates', '--quiet',
  ];

  it('stops mid-epoch and resumes', async () => {
    const interrupted = await trainAndInterrupt(args, 1500);
    expect(interrupted.output).toMatch(/interrupt received: finishing the current batch/);
    expect(interrupted.code).toBe(130);
    const state = JSON.parse(fs.readFileSync(path.join(runDir, 'checkpoint/state.json'), 'utf8'));
    expect(state.phase).toBe(2);
    // A phase 2 epoch has 94 batches here and takes several seconds; stopping at its end would leave step 0.
    expect(state.step).toBeGreaterThan(0);
    expect(state.step).toBeLessThan(94);
    expect(interrupted.secondsToExit).toBeLessThan(10);

    const resumed = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(process.execPath, [CLI, 'train', '--resume', runDir, '--quiet'], { env: { ...process.env, FER_PROGRESS: '0' }, stdio: 'ignore' });
      child.on('error', reject);
      child.on('exit', resolve);
    });
    expect(resumed).toBe(0);
    const history = fs.readFileSync(path.join(runDir, 'history.csv'), 'utf8').trim().split('\n');
    // Header, one phase 1 epoch and two phase 2 epochs.
    expect(history).toHaveLength(4);
  }, 600_000);
});
