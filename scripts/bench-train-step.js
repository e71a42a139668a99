#!/usr/bin/env node
/**
 * Profiles one training step of the toolkit on tfjs-node. It times the input
 * pipeline (pixels to float, augmentation, preprocessing), the forward pass,
 * forward plus backward, and the whole step with the Adam update. It then
 * lists the kernels of one step from tf.profile, grouped by kernel name. The
 * gap between the step's wall time and its summed kernel time is JavaScript
 * and binding overhead.
 *
 * Usage: npm run build && node scripts/bench-train-step.js BACKBONE SIZE [PHASE 1|2] [STEPS] [BATCH]
 * Example: node scripts/bench-train-step.js MobileNetV2 64 2 5 32
 * FER_BENCH_ADAM=tfjs uses tf.train.adam instead of the trainer's GroupedAdamOptimizer.
 * In phase 2 it also times the trainer's graph step (lib/graph/train_step.ts) on the same inputs.
 */
const tf = require('@tensorflow/tfjs');

const { initBackend } = require('../dist/backend');
const { augmentBatch, STUDY_AUGMENTATION } = require('../dist/data/augment');
const { pixelsToTensor, preprocess } = require('../dist/data/preprocess');
const { createModel, setTrainableBlocks, trainableVariables } = require('../dist/models/factory');
const { GroupedAdamOptimizer } = require('../dist/perf/adam');
const { GraphTrainStep } = require('../dist/graph/train_step');
const { setLogLevel } = require('../dist/util/log');
const { Rng } = require('../dist/util/rng');

function mean(values) {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

async function main() {
  const [backbone, sizeArg, phaseArg, stepsArg, batchArg] = process.argv.slice(2);
  if (backbone === undefined || sizeArg === undefined) {
    process.stderr.write('usage: node scripts/bench-train-step.js BACKBONE SIZE [PHASE 1|2] [STEPS] [BATCH]\n');
    process.exit(2);
  }
  const size = Number(sizeArg);
  const phase = Number(phaseArg ?? 2);
  const steps = Number(stepsArg ?? 5);
  const batch = Number(batchArg ?? 32);
  setLogLevel('warn');
  await initBackend('node');
  const fer = await createModel(backbone, { inputSize: size, weights: 'random' });
  setTrainableBlocks(fer, phase === 1 ? 0 : 'all');
  const variables = trainableVariables(fer);
  const learningRate = phase === 1 ? 1e-3 : 1e-4;
  const optimizer = process.env.FER_BENCH_ADAM === 'tfjs' ? tf.train.adam(learningRate) : new GroupedAdamOptimizer(learningRate);
  const rng = new Rng(1);
  const pixels = Uint8Array.from({ length: batch * size * size * 3 }, () => rng.int(256));
  const oneHot = tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 7), 'int32'), 7).toFloat();

  const input = () => tf.tidy(() => preprocess(augmentBatch(pixelsToTensor(pixels, batch, size), STUDY_AUGMENTATION, rng), fer.backbone.preprocessing));
  const loss = (x) => tf.losses.softmaxCrossEntropy(oneHot, fer.model.apply(x, { training: true }));
  const timings = { input: [], forward: [], forwardBackward: [], step: [] };
  for (let i = 0; i < steps + 2; i++) {
    let start = performance.now();
    const x = input();
    await x.data();
    const inputMs = performance.now() - start;

    start = performance.now();
    const forward = tf.tidy(() => loss(x));
    await forward.data();
    forward.dispose();
    const forwardMs = performance.now() - start;

    start = performance.now();
    const { value, grads } = tf.variableGrads(() => loss(x), variables);
    await value.data();
    tf.dispose([value, Object.values(grads)]);
    const forwardBackwardMs = performance.now() - start;

    start = performance.now();
    const stepLoss = optimizer.minimize(() => loss(x), true, variables);
    await stepLoss.data();
    stepLoss.dispose();
    const stepMs = performance.now() - start;
    x.dispose();
    if (i >= 2) {
      timings.input.push(inputMs);
      timings.forward.push(forwardMs);
      timings.forwardBackward.push(forwardBackwardMs);
      timings.step.push(stepMs);
    }
  }
  if (phase === 1) {
    // The trainer's phase 1: backbone and pooling before the tape, only the head inside it.
    const { HEAD_LAYER_PREFIX } = require('../dist/models/factory');
    const pool = fer.model.getLayer(`${HEAD_LAYER_PREFIX}pool`);
    const backbone = tf.model({ inputs: fer.model.inputs, outputs: pool.output });
    const head = fer.model.layers.filter((l) => fer.headLayers.includes(l.name) && l !== pool);
    const split = [];
    for (let i = 0; i < steps + 2; i++) {
      const x = input();
      const start = performance.now();
      const stepLoss = tf.tidy(() => {
        const features = backbone.apply(x, { training: true });
        return optimizer.minimize(() => tf.losses.softmaxCrossEntropy(oneHot, head.reduce((h, layer) => layer.apply(h, { training: true }), features)), true, variables);
      });
      await stepLoss.data();
      stepLoss.dispose();
      x.dispose();
      if (i >= 2) {
        split.push(performance.now() - start);
      }
    }
    process.stdout.write(`phase 1 step with the backbone outside the gradient tape: ${mean(split).toFixed(1)} ms\n`);
  }
  const stepMs = mean(timings.step);
  process.stdout.write(
    `${backbone}@${size} phase ${phase}, batch ${batch}, ${variables.length} trainable tensors, ${optimizer.constructor.name}, ${steps} steps: ` +
      `input ${mean(timings.input).toFixed(1)} ms, forward ${mean(timings.forward).toFixed(1)} ms, forward+backward ${mean(timings.forwardBackward).toFixed(1)} ms, ` +
      `step with Adam ${stepMs.toFixed(1)} ms (${((batch / (stepMs + mean(timings.input))) * 1000).toFixed(1)} img/s)\n`,
  );

  if (phase === 2) {
    // The trainer's fine-tuning step as one TensorFlow graph (lib/graph/train_step.ts), on the same inputs.
    const graph = await GraphTrainStep.create(fer.model, variables, learningRate, []);
    const targets = tf.div(oneHot, batch);
    const masks = graph.masks.map((m) => tf.ones([batch, ...m.shape]));
    const graphMs = [];
    for (let i = 0; i < steps + 2; i++) {
      const x = input();
      await x.data();
      const start = performance.now();
      const out = graph.run(x, targets, masks);
      await out.loss.data();
      if (i >= 2) {
        graphMs.push(performance.now() - start);
      }
      tf.dispose([x, out.loss, out.predicted]);
    }
    await graph.dispose();
    process.stdout.write(
      `graph step (forward, backward and Adam in one TensorFlow graph): ${mean(graphMs).toFixed(1)} ms ` +
        `(${((batch / (mean(graphMs) + mean(timings.input))) * 1000).toFixed(1)} img/s with input)\n`,
    );
  }

  const x = input();
  const profile = await tf.profile(async () => {
    const stepLoss = optimizer.minimize(() => loss(x), true, variables);
    await stepLoss.data();
    stepLoss.dispose();
  });
  x.dispose();
  const byKernel = new Map();
  let kernelMs = 0;
  for (const kernel of profile.kernels) {
    // tf.profile lists an op's scope ("fusedConv2d__op", or "unnamed scope" for a custom gradient) as well as
    // the kernels it runs inside. Counting both would count the same time twice.
    if (kernel.name.endsWith('__op') || kernel.name === 'unnamed scope') {
      continue;
    }
    const ms = typeof kernel.kernelTimeMs === 'number' ? kernel.kernelTimeMs : 0;
    const entry = byKernel.get(kernel.name) ?? { ms: 0, count: 0 };
    entry.ms += ms;
    entry.count += 1;
    byKernel.set(kernel.name, entry);
    kernelMs += ms;
  }
  const kernelCount = [...byKernel.values()].reduce((sum, e) => sum + e.count, 0);
  process.stdout.write(
    `one profiled eager step (FER_GRAPH=off): ${kernelCount} kernels, ${kernelMs.toFixed(1)} ms in kernels. Profiling adds its own time, so compare ` +
      'this with the unprofiled step above; the difference is JavaScript and binding overhead.\n',
  );
  [...byKernel.entries()]
    .sort((a, b) => b[1].ms - a[1].ms)
    .slice(0, 20)
    .forEach(([name, { ms, count }]) => process.stdout.write(`  ${name.padEnd(34)} ${ms.toFixed(1).padStart(8)} ms  ${String(count).padStart(5)} calls\n`));
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`error: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
