#!/usr/bin/env node
/** The `fer` command line: train, evaluate and inspect facial emotion recognition models. */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Command, CommanderError, Option } from 'commander';

import { setLogLevel } from '../util/log';
import { registerBenchCommand } from './bench_command';
import { registerDataCommand } from './data_command';
import { registerEvaluateCommand } from './evaluate_command';
import { registerExplainCommand } from './explain_command';
import { registerModelsCommand } from './models_command';
import { registerPredictCommand } from './predict_command';
import { registerTrainCommand } from './train_command';

/** Exit status of a usage error (an unknown command or option, an invalid or missing argument); 1 means the command failed. */
export const USAGE_EXIT_CODE = 2;

function packageVersion(): string {
  const file = path.join(__dirname, '..', '..', 'package.json');
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('fer')
    .version(packageVersion(), '-V, --version', 'print the version of fer-toolkit')
    // Set before the commands are added, so that every command inherits it. Commander has already
    // printed the help, version or error message; only the exit status of usage errors changes.
    .exitOverride((error: CommanderError) => {
      process.exit(error.exitCode === 0 ? 0 : USAGE_EXIT_CODE);
    })
    .description('Facial emotion recognition with transfer learning: train, evaluate and explain CNN models on labelled face folders.')
    .addOption(new Option('--log-level <level>', 'log detail').choices(['debug', 'info', 'warn', 'error']).default('info'))
    .hook('preAction', (command) => {
      setLogLevel(command.opts<{ logLevel: 'debug' | 'info' | 'warn' | 'error' }>().logLevel);
    })
    .showHelpAfterError('(run with --help for usage)');
  registerTrainCommand(program);
  registerEvaluateCommand(program);
  registerExplainCommand(program);
  registerPredictCommand(program);
  registerModelsCommand(program);
  registerDataCommand(program);
  registerBenchCommand(program);
  return program;
}

export async function main(argv: string[] = process.argv): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (error) {
    const err = error as Error & { exitCode?: number };
    process.stderr.write(`error: ${err.message}\n`);
    if (process.env.FER_DEBUG === '1' && err.stack !== undefined) {
      process.stderr.write(`${err.stack}\n`);
    }
    process.exitCode = err.exitCode ?? 1;
  }
}

if (require.main === module) {
  void main().then(() => {
    // tfjs-node and sharp keep thread pools alive; exit explicitly once the command is done.
    process.exit(process.exitCode ?? 0);
  });
}
