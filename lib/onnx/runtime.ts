/**
 * ONNX Runtime for inference, when the optional onnxruntime-node package
 * loads: its npm package ships the CPU build for Linux, macOS and Windows.
 * Its install script only adds GPU libraries, so `npm install --ignore-scripts`
 * is enough for the CPU.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';

import type * as tf from '@tensorflow/tfjs';
import type * as Ort from 'onnxruntime-node';

import { writeFileAtomic } from '../models/io';
import { log } from '../util/log';
import { exportOnnx, type OnnxExportOptions } from './export';

type OrtModule = typeof Ort;

let loaded: { module: OrtModule } | { error: string } | undefined;

/** Loads onnxruntime-node once; returns undefined (and why, from onnxRuntimeError) when it cannot load. */
export function onnxRuntime(): OrtModule | undefined {
  if (loaded === undefined) {
    try {
      // Resolved at run time so that the package stays optional.
      loaded = { module: require('onnxruntime-node') as OrtModule };
    } catch (error) {
      loaded = { error: (error as Error).message.split('\n')[0] ?? String(error) };
    }
  }
  return 'module' in loaded ? loaded.module : undefined;
}

/** Why onnxruntime-node did not load, or undefined when it loaded. */
export function onnxRuntimeError(): string | undefined {
  onnxRuntime();
  return loaded !== undefined && 'error' in loaded ? loaded.error : undefined;
}

export function onnxRuntimeVersion(): string | undefined {
  return onnxRuntime()?.env.versions.node;
}

export interface OnnxSessionOptions {
  /** Threads of one operator; default the number of CPUs that Node.js reports. */
  intraOpThreads?: number;
  /** Accept graph inputs after the first (dropout masks); run() then needs them in `extra`. */
  extraInputs?: boolean;
}

/** An ONNX Runtime session for a model with one NHWC float32 input (plus, optionally, mask inputs) and one output. */
export class OnnxModel {
  private constructor(
    private readonly ort: OrtModule,
    private readonly session: Ort.InferenceSession,
    readonly inputName: string,
    readonly outputName: string,
  ) {}

  /** Creates a session from a .onnx file or serialized model bytes. Throws when onnxruntime-node is not available. */
  static async create(model: string | Uint8Array, options: OnnxSessionOptions = {}): Promise<OnnxModel> {
    const ort = onnxRuntime();
    if (ort === undefined) {
      throw new Error(`onnxruntime-node cannot be loaded (${onnxRuntimeError() ?? 'unknown reason'}). Install it with: npm install --ignore-scripts onnxruntime-node`);
    }
    const sessionOptions: Ort.InferenceSession.SessionOptions = {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: options.intraOpThreads ?? os.availableParallelism(),
      interOpNumThreads: 1,
      executionMode: 'sequential',
      // Flush subnormal floats (below about 1.2e-38) to zero. Deep stacks of random or nearly dead
      // units produce them, and x86 arithmetic on them is many times slower.
      extra: { session: { set_denormal_as_zero: '1' } },
    };
    const session = typeof model === 'string' ? await ort.InferenceSession.create(model, sessionOptions) : await ort.InferenceSession.create(model, sessionOptions);
    const [inputName] = session.inputNames;
    const [outputName] = session.outputNames;
    const inputCountOk = options.extraInputs === true ? session.inputNames.length >= 1 : session.inputNames.length === 1;
    if (inputName === undefined || outputName === undefined || !inputCountOk || session.outputNames.length !== 1) {
      throw new Error(`Expected an ONNX model with one input and one output; it has inputs [${session.inputNames.join(', ')}] and outputs [${session.outputNames.join(', ')}].`);
    }
    return new OnnxModel(ort, session, inputName, outputName);
  }

  /**
   * Runs a batch [n, height, width, channels] of float32 values and returns
   * the output's values, row-major. `extra` feeds the other graph inputs by name.
   */
  async run(
    input: Float32Array,
    shape: [number, number, number, number],
    extra: Record<string, { data: Float32Array; shape: number[] }> = {},
  ): Promise<Float32Array> {
    const feeds: Record<string, Ort.Tensor> = { [this.inputName]: new this.ort.Tensor('float32', input, shape) };
    for (const [name, value] of Object.entries(extra)) {
      feeds[name] = new this.ort.Tensor('float32', value.data, value.shape);
    }
    const results = await this.session.run(feeds);
    const output = results[this.outputName];
    if (output === undefined || output.type !== 'float32') {
      throw new Error(`ONNX model output "${this.outputName}" is missing or not float32.`);
    }
    return output.data as Float32Array;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/**
 * Returns the path of an ONNX copy of `model` at `file`, exporting it first
 * when the file is missing or older than `source` (the weights it was made
 * from). Export failures propagate; the caller decides whether to fall back.
 */
export async function ensureOnnxFile(model: tf.LayersModel, file: string, source: string | undefined, options: OnnxExportOptions = {}): Promise<string> {
  const existing = fs.existsSync(file) ? fs.statSync(file) : undefined;
  const sourceTime = source !== undefined && fs.existsSync(source) ? fs.statSync(source).mtimeMs : 0;
  if (existing !== undefined && existing.mtimeMs >= sourceTime) {
    return file;
  }
  const start = performance.now();
  const bytes = exportOnnx(model, options);
  await writeFileAtomic(file, bytes);
  log.info(`onnx: exported ${file} (${(bytes.byteLength / 2 ** 20).toFixed(1)} MiB) in ${((performance.now() - start) / 1000).toFixed(1)} s.`);
  return file;
}
