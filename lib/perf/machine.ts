/**
 * The CPU a benchmark runs on and its nominal peak float32 rate, from
 * /proc/cpuinfo (Linux), plus a measured matrix-multiply rate as the
 * practical ceiling of TensorFlow's kernels on it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';

import * as tf from '@tensorflow/tfjs';

export interface MachineInfo {
  cpuModel: string;
  vendor: string;
  family: number | undefined;
  modelNumber: number | undefined;
  cores: number;
  /** Clock that the kernel reports (for a virtual machine, usually the TSC rate), in MHz. */
  mhz: number | undefined;
  avx2: boolean;
  fma: boolean;
  avx512: boolean;
  memoryGiB: number;
  /** Float32 operations per cycle and core assumed for the nominal peak. */
  flopsPerCycle: number;
  nominalPeakGflops: number;
  /** Reasoning behind flopsPerCycle, for the report. */
  assumption: string;
}

function cpuinfoField(text: string, name: string): string | undefined {
  const match = new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(text);
  return match?.[1]?.trim();
}

/**
 * FMA throughput per core from the instruction set and, for AMD, the
 * family: Zen and Zen+ (family 0x17, models below 0x30) execute 256-bit FMAs
 * as two 128-bit halves on two pipes, 16 float32 operations per cycle; Zen 2
 * and later, and Intel cores with AVX2, have two 256-bit FMA pipes (32);
 * cores with AVX-512 are counted with two 512-bit pipes (64), which not all have.
 */
function flopsPerCycle(vendor: string, family: number | undefined, model: number | undefined, flags: Set<string>): { value: number; assumption: string } {
  if (flags.has('avx512f')) {
    return { value: 64, assumption: 'AVX-512: two 512-bit FMA units per core, 2 x 16 lanes x 2 operations' };
  }
  if (flags.has('fma') && flags.has('avx2')) {
    if (vendor === 'AuthenticAMD' && family === 0x17 && model !== undefined && model < 0x30) {
      return { value: 16, assumption: 'AMD Zen/Zen+ (family 0x17, model < 0x30): two 128-bit FMA pipes per core, 2 x 4 lanes x 2 operations' };
    }
    return { value: 32, assumption: 'AVX2 with FMA: two 256-bit FMA units per core, 2 x 8 lanes x 2 operations' };
  }
  return { value: 8, assumption: 'SSE without FMA: one 128-bit multiply and one add per cycle' };
}

export function machineInfo(): MachineInfo {
  const text = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
  const flags = new Set((cpuinfoField(text, 'flags') ?? '').split(/\s+/));
  const vendor = cpuinfoField(text, 'vendor_id') ?? 'unknown';
  const familyText = cpuinfoField(text, 'cpu family');
  const modelText = cpuinfoField(text, 'model');
  const family = familyText === undefined ? undefined : Number(familyText);
  const modelNumber = modelText === undefined ? undefined : Number(modelText);
  const mhzText = cpuinfoField(text, 'cpu MHz');
  const mhz = mhzText === undefined ? undefined : Number(mhzText);
  const cores = os.availableParallelism();
  const perCycle = flopsPerCycle(vendor, family, modelNumber, flags);
  const ghz = (mhz ?? 0) / 1000;
  return {
    cpuModel: cpuinfoField(text, 'model name') ?? os.cpus()[0]?.model ?? 'unknown',
    vendor,
    family,
    modelNumber,
    cores,
    mhz,
    avx2: flags.has('avx2'),
    fma: flags.has('fma'),
    avx512: flags.has('avx512f'),
    memoryGiB: os.totalmem() / 2 ** 30,
    flopsPerCycle: perCycle.value,
    nominalPeakGflops: cores * ghz * perCycle.value,
    assumption: `${cores} cores x ${ghz.toFixed(2)} GHz x ${perCycle.value} FLOP/cycle (${perCycle.assumption})`,
  };
}

/**
 * Measures the best float32 rate of a square matrix product on the active
 * tfjs backend (TensorFlow's own kernel on tfjs-node), in GFLOP/s.
 */
export async function measureMatMulGflops(size = 2048, runs = 5): Promise<number> {
  const a = tf.randomNormal([size, size], 0, 1, 'float32', 1);
  const b = tf.randomNormal([size, size], 0, 1, 'float32', 2);
  let best = Infinity;
  try {
    for (let i = 0; i <= runs; i++) {
      const start = performance.now();
      const c = tf.matMul(a, b);
      await c.data();
      const seconds = (performance.now() - start) / 1000;
      c.dispose();
      if (i > 0) {
        best = Math.min(best, seconds);
      }
    }
  } finally {
    a.dispose();
    b.dispose();
  }
  return (2 * size ** 3) / best / 1e9;
}
