#!/usr/bin/env node
/**
 * Measures head-only training throughput (phase 1: frozen MobileNet-0.25
 * backbone at 96x96, batch 32) on each TensorFlow.js backend, one child
 * process per backend, and prints images per second and the ratio to
 * tfjs-node. Usage: node scripts/bench-backends.js [steps]
 * Needs a build (npm run build).
 */
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const steps = Number(process.argv[2] ?? 5);

if (process.env.FER_BENCH_CHILD === '1') {
  const tf = require('@tensorflow/tfjs');
  const dist = path.join(__dirname, '..', 'dist');
  const { initBackend } = require(path.join(dist, 'backend'));
  const { createModel, setTrainableBlocks, trainableVariables } = require(path.join(dist, 'models', 'factory'));
  (async () => {
    const info = await initBackend(process.env.FER_BACKEND);
    const fer = await createModel('MobileNet-0.25', { inputSize: 96, weights: 'random' });
    setTrainableBlocks(fer, 0);
    const variables = trainableVariables(fer);
    const optimizer = tf.train.adam(1e-3);
    const x = tf.randomUniform([32, 96, 96, 3], -1, 1);
    const y = tf.oneHot(tf.randomUniform([32], 0, 7, 'int32'), 7).toFloat();
    const step = () => {
      const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, fer.model.apply(x, { training: true })), true, variables);
      loss.dataSync();
      loss.dispose();
    };
    step();
    const start = performance.now();
    for (let i = 0; i < steps; i++) step();
    const seconds = (performance.now() - start) / 1000;
    process.stdout.write(JSON.stringify({ backend: info.name, imagesPerSecond: (32 * steps) / seconds }) + '\n');
  })();
  return;
}

const results = [];
for (const backend of ['node', 'wasm', 'cpu']) {
  const child = spawnSync(process.execPath, [__filename, String(backend === 'cpu' ? Math.max(1, Math.round(steps / 5)) : steps)], {
    env: { ...process.env, FER_BENCH_CHILD: '1', FER_BACKEND: backend, FER_LOG_LEVEL: 'error' },
    encoding: 'utf8',
  });
  const line = child.stdout.trim().split('\n').pop();
  if (child.status !== 0 || !line) {
    process.stdout.write(`${backend}: failed (${child.stderr.trim().split('\n').pop()})\n`);
    continue;
  }
  results.push(JSON.parse(line));
}
const node = results.find((r) => r.backend === 'tensorflow');
for (const r of results) {
  const ratio = node ? (node.imagesPerSecond / r.imagesPerSecond).toFixed(1) : 'n/a';
  process.stdout.write(`${r.backend.padEnd(11)} ${r.imagesPerSecond.toFixed(1).padStart(8)} img/s   tfjs-node is ${ratio}x faster\n`);
}
