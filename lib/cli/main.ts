#!/usr/bin/env node
/** The `fer` command line: train, evaluate and inspect facial emotion recognition models. */
import { Command, Option } from 'commander';

import { setLogLevel } from '../util/log';
import { registerBenchCommand } from './bench_command';
import { registerDataCommand } from './data_command';
import { registerEvaluateCommand } from './evaluate_command';
import { registerExplainCommand } from './explain_command';
import { registerModelsCommand } from './models_command';
import { registerPredictCommand } from './predict_command';
import { registerTrainCommand } from './train_command';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('fer')
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
