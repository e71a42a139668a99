#!/usr/bin/env node
/**
 * Checks and times lib/perf/adam.ts's GroupedAdamOptimizer against
 * tf.train.adam on a model's trainable variables: the same fixed gradients
 * for several steps from the same weights must give bit-identical weights,
 * a checkpoint of one must restore into the other, and the script prints the
 * milliseconds of one update for both.
 *
 * Usage: npm run build && node scripts/bench-adam.js [BACKBONE] [SIZE] [STEPS]
 * Exits 1 when the results differ.
 */
const tf = require('@tensorflow/tfjs');

const { initBackend } = require('../dist/backend');
const { createModel, setTrainableBlocks, trainableVariables } = require('../dist/models/factory');
const { GroupedAdamOptimizer } = require('../dist/perf/adam');
const { setLogLevel } = require('../dist/util/log');

function snapshot(variables) {
  return variables.map((v) => v.dataSync().slice());
}

function restore(variables, values) {
  variables.forEach((v, i) => v.assign(tf.tensor(values[i], v.shape)));
}

function maxDifference(a, b) {
  let max = 0;
  a.forEach((values, i) => {
    for (let j = 0; j < values.length; j++) {
      max = Math.max(max, Math.abs(values[j] - b[i][j]));
    }
  });
  return max;
}

async function run(optimizer, variables, gradients, steps) {
  const times = [];
  for (let s = 0; s < steps; s++) {
    const start = performance.now();
    optimizer.applyGradients(variables.map((v, i) => ({ name: v.name, tensor: gradients[s % gradients.length][i] })));
    await variables[variables.length - 1].data();
    times.push(performance.now() - start);
  }
  return times.slice(1).reduce((a, b) => a + b, 0) / Math.max(1, times.length - 1);
}

async function main() {
  const [backbone = 'MobileNetV2', sizeArg = '64', stepsArg = '6'] = process.argv.slice(2);
  const steps = Number(stepsArg);
  setLogLevel('warn');
  await initBackend('node');
  const fer = await createModel(backbone, { inputSize: Number(sizeArg), weights: 'random' });
  setTrainableBlocks(fer, 'all');
  const variables = trainableVariables(fer);
  const gradients = [1, 2, 3].map((seed) => variables.map((v) => tf.randomNormal(v.shape, 0, 0.01, 'float32', seed)));
  const initial = snapshot(variables);

  const reference = tf.train.adam(1e-3);
  const referenceMs = await run(reference, variables, gradients, steps);
  const expected = snapshot(variables);

  restore(variables, initial);
  const grouped = new GroupedAdamOptimizer(1e-3);
  const groupedMs = await run(grouped, variables, gradients, steps);
  const actual = snapshot(variables);
  const difference = maxDifference(actual, expected);

  // Checkpoint round trip: grouped state into tf.train.adam, one more step each.
  const fromGrouped = tf.train.adam(1e-3);
  await fromGrouped.setWeights(await grouped.getWeights());
  const afterSteps = snapshot(variables);
  await run(fromGrouped, variables, [gradients[0]], 1);
  const viaReference = snapshot(variables);
  restore(variables, afterSteps);
  await run(grouped, variables, [gradients[0]], 1);
  const viaGrouped = snapshot(variables);
  const roundTrip = maxDifference(viaReference, viaGrouped);

  process.stdout.write(
    `${backbone}@${sizeArg}: ${variables.length} variables, ${variables.reduce((n, v) => n + v.size, 0)} values; ` +
      `update ${referenceMs.toFixed(1)} ms with tf.train.adam, ${groupedMs.toFixed(1)} ms grouped; ` +
      `max weight difference after ${steps} steps ${difference}, after a checkpoint round trip ${roundTrip}\n`,
  );
  if (difference !== 0 || roundTrip !== 0) {
    process.stderr.write('error: GroupedAdamOptimizer does not reproduce tf.train.adam bit for bit.\n');
    process.exit(1);
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`error: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
